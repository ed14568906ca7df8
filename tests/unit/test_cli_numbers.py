"""Every number on every command line of the project (simulator, ingress, testbed) is checked at the
boundary: NaN, infinities, negatives, zero where it means nothing, huge values and non-numbers are
refused with a clear error, so no run starts that sends nothing, never ends or hangs."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.__main__ import build_parser as cli_of_ingress
from simulator.cli import build_parser as cli_of_simulator
from simulator.cli import main as simulator_main
from testbed.cli import build_parser as cli_of_testbed
from tests.conftest import examples
from toolkit.cli_help import Bounded

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "simulator": cli_of_simulator,
    "ingress": cli_of_ingress,
    "testbed": cli_of_testbed,
}
HOSTILE = ["nan", "NaN", "inf", "-inf", "Infinity", "-1", "-5", "0", "1e30", "9" * 400, "abc", "", "1e", "0x10"]


def numeric_options() -> Iterator[tuple[str, argparse.Action]]:
    """(program command option, action) of every option of every parser and subparser that takes a number."""

    def walk(name: str, parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command, sub in action.choices.items():
                    yield from walk(f"{name} {command}", sub)
            elif (action.option_strings and action.type in (int, float, *())) or isinstance(action.type, Bounded):
                yield f"{name} {action.option_strings[-1]}", action

    for program, build in PARSERS.items():
        yield from walk(program, build())


OPTIONS = dict(numeric_options())


def test_the_walk_finds_the_numeric_options_of_every_program() -> None:
    programs = {name.split()[0] for name in OPTIONS}
    assert programs == set(PARSERS)
    assert {"simulator run --duration", "simulator run --workers", "ingress bridge --batch-size"} <= set(OPTIONS)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_number_is_bounded_or_a_closed_choice(name: str) -> None:
    """A bare int or float accepts nan, inf, -5 and 0: only a fixed list of choices may use one."""
    action = OPTIONS[name]
    assert isinstance(action.type, Bounded) or action.choices, f"{name} takes {action.type} unchecked"


def _check(convert: Bounded, text: str) -> None:
    try:
        value = convert(text)
    except argparse.ArgumentTypeError as exc:
        assert str(exc).startswith(repr(text)), "the error quotes what was given"
        return
    assert math.isfinite(value)
    assert (value > convert.minimum if convert.positive else value >= convert.minimum) and value <= convert.maximum


@pytest.mark.parametrize("name", sorted(name for name, a in OPTIONS.items() if isinstance(a.type, Bounded)))
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_values_are_refused_or_within_the_bounds(name: str, text: str) -> None:
    convert = OPTIONS[name].type
    assert isinstance(convert, Bounded)
    _check(convert, text)
    if text in ("nan", "inf", "-inf", "-5", "abc", "1e30"):
        with pytest.raises(argparse.ArgumentTypeError):
            convert(text)


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
    st.text(max_size=20),
)


@settings(max_examples=examples(300), deadline=None)
@given(index=st.integers(min_value=0), text=NUMBERS)
def test_any_text_is_refused_or_within_the_bounds(index: int, text: str) -> None:
    bounded = [a.type for a in OPTIONS.values() if isinstance(a.type, Bounded)]
    _check(bounded[index % len(bounded)], text)


@pytest.mark.parametrize(
    "option", [["--duration", "nan"], ["--duration", "-5"], ["--duration", "inf"], ["--workers", "0"]]
)
def test_the_simulator_refuses_a_run_that_would_send_nothing_never_end_or_hang(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        simulator_main(["run", "--fleet", "simulator/fleets/smoke.yaml", "--dry-run", "/dev/null", *option])
    assert exit_info.value.code == 2
    assert f"argument {option[0]}: {option[1]!r} is not" in capsys.readouterr().err
