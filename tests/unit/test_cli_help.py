"""Every option of every command line shows its default in --help."""

from __future__ import annotations

import argparse

import pytest

from ingress.__main__ import build_parser as parser_of_ingress
from simulator.cli import build_parser as parser_of_simulator
from testbed.cli import build_parser as parser_of_testbed


def commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser, *(p for action in subparsers for p in action.choices.values())]


@pytest.mark.parametrize(
    "build", [parser_of_testbed, parser_of_simulator, parser_of_ingress], ids=["testbed", "simulator", "ingress"]
)
def test_every_option_with_a_default_names_it_in_help(build: object) -> None:
    missing = []
    for parser in commands(build()):  # type: ignore[operator]
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if (
                not action.option_strings
                or action.default in (None, argparse.SUPPRESS)
                or action.help == argparse.SUPPRESS
            ):
                continue
            if f"(default: {action.default})" not in text:
                missing.append(f"{parser.prog} {action.option_strings[0]}")
    assert not missing, missing
