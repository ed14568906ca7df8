"""The project's command lines (simulator, ingress, testbed): every --help shows each option's default."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class _DefaultsKeptText(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default in its help; the description and the epilog (the environment a tool
    reads, one variable a line) as written."""


class HelpWithDefaults(argparse.ArgumentParser):
    """An ArgumentParser (and, as `parser_class`, its subcommands) whose help names each default,
    an option declared without help text included."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsKeptText)
        super().__init__(**kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.help is None and action.option_strings and action.default not in (None, argparse.SUPPRESS):
            action.help = "(default: %(default)s)"  # the formatter adds it only to options with help text
        return action


MAX_PORT = 65_535


def port_number(text: str) -> int:
    """A TCP port for a server of ours (0: any free one), refused with the reason otherwise."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0 to {MAX_PORT})")
    return port


@dataclass(frozen=True)
class Bounded:
    """A number on the command line within [minimum, maximum] (`minimum` itself excluded when
    `positive`): NaN, infinities, a non-number and anything out of range are refused with the reason.
    The bounds are part of the option's contract (a property test feeds every option hostile values)."""

    kind: type[int] | type[float]
    minimum: float
    maximum: float
    what: str
    positive: bool = False

    @property
    def __name__(self) -> str:  # argparse names the type in some of its errors
        return self.what

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
            finite = math.isfinite(value)  # an int of hundreds of digits has no float: OverflowError
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.what}") from None
        if not finite:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.what} (a finite number)")
        low_ok = value > self.minimum if self.positive else value >= self.minimum
        if not low_ok or value > self.maximum:
            low = f"above {self.minimum:g}" if self.positive else f"from {self.minimum:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.what} ({low} to {self.maximum:g})")
        return value


# the longest run, wait or window any command takes: a month
MAX_SECONDS = 30 * 86_400.0
MAX_COUNT = 10_000_000
MAX_RATE = 1e9


def seconds(maximum: float = MAX_SECONDS, positive: bool = True) -> Callable[[str], int | float]:
    """A duration in seconds: above 0 (or from 0) up to `maximum`."""
    return Bounded(float, 0.0, maximum, "a number of seconds", positive)


def count(maximum: int = MAX_COUNT, minimum: int = 1) -> Callable[[str], int | float]:
    """A whole number of things from `minimum` up to `maximum`."""
    return Bounded(int, minimum, maximum, "a whole number")


def rate(maximum: float = MAX_RATE) -> Callable[[str], int | float]:
    """A positive number per second (or a positive factor)."""
    return Bounded(float, 0.0, maximum, "a positive number", positive=True)


SEED = Bounded(int, 0, 2**63 - 1, "a seed (a whole number from 0)")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, after answering a shell's completion request if this run is one (argcomplete: it exits
    then); `eval "$(register-python-argcomplete testbed)"` turns completion on in bash or zsh."""
    import argcomplete  # noqa: PLC0415 - the CLIs' only; the Lambda bundle ships this package too

    argcomplete.autocomplete(parser)
    return parser.parse_args(argv)
