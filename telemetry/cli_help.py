"""The project's command lines (simulator, ingress, testbed): every --help shows each option's default."""

from __future__ import annotations

import argparse
from typing import Any


class HelpWithDefaults(argparse.ArgumentParser):
    """An ArgumentParser (and, as `parser_class`, its subcommands) whose help names each default,
    an option declared without help text included."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
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


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, after answering a shell's completion request if this run is one (argcomplete: it exits
    then); `eval "$(register-python-argcomplete testbed)"` turns completion on in bash or zsh."""
    import argcomplete  # noqa: PLC0415 - the CLIs' only; the Lambda bundle ships this package too

    argcomplete.autocomplete(parser)
    return parser.parse_args(argv)
