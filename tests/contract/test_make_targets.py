"""The README's list of make targets is `make help`'s, and every `make X` it mentions exists."""

from __future__ import annotations

import re

from testbed.paths import ROOT
from tests.docs import manual_text, marked_block

TARGET = re.compile(r"^([a-z0-9-]+):.*?## (.*)$", re.MULTILINE)


def make_help() -> dict[str, str]:
    return dict(TARGET.findall((ROOT / "Makefile").read_text()))


def test_the_readme_table_is_make_help() -> None:
    table = marked_block("targets")
    rows = dict(re.findall(r"^\| `make ([a-z0-9-]+)` \| (.*) \|$", table, re.MULTILINE))
    assert rows == {name: text.replace("|", "/") for name, text in make_help().items()}


def test_every_make_command_in_the_readme_is_a_target() -> None:
    """Commands, not prose: `make X` in backticks, or a line of a code block that starts with it."""
    text = manual_text()
    mentioned = set(re.findall(r"(?:`|^)(?:[A-Z_]+=\S+ )*make ([a-z][a-z0-9-]+)", text, re.MULTILINE))
    assert "up" in mentioned and "test" in mentioned, "the scan finds the README's commands"
    assert mentioned - set(make_help()) == set(), sorted(mentioned - set(make_help()))
