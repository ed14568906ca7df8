"""Every python -m command in the README's code blocks is one its command line accepts today
(a renamed option or subcommand fails here, before a user meets it)."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable

import pytest

from ingress.__main__ import build_parser as cli_of_ingress
from simulator.cli import build_parser as cli_of_simulator
from testbed.cli import build_parser as cli_of_testbed
from testbed.paths import ROOT

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "testbed": cli_of_testbed,
    "simulator": cli_of_simulator,
    "ingress": cli_of_ingress,
}
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?python3? -m (testbed|simulator|ingress)\b(.*)$")


def readme_commands() -> list[tuple[str, list[str]]]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```(?:bash|sh|console)?\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            found = COMMAND.match(line.strip())
            if found:
                commands.append((found.group(1), shlex.split(found.group(2), comments=True)))
    return commands


def test_the_readme_shows_commands_of_each_kind() -> None:
    assert {program for program, _ in readme_commands()} >= {"testbed", "simulator"}


@pytest.mark.parametrize(
    ("program", "args"), readme_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_each_readme_command_parses(program: str, args: list[str]) -> None:
    try:
        PARSERS[program]().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"python -m {program} {' '.join(args)}: the command line refuses it (exit {exc.code})")


def test_every_project_path_the_readme_names_exists() -> None:
    """Paths in backticks that start with a part's folder (`testbed/runs/report.py`, `infra/`): a
    moved or renamed file fails here instead of leaving the README pointing at nothing."""
    folders = "infra|processor|telemetry|simulator|ingress|testbed|tests"
    named = set(re.findall(rf"`((?:{folders})/[\w./-]*)`", (ROOT / "README.md").read_text()))
    assert len(named) > 10, "the README names the project's files"
    assert sorted(path for path in named if not (ROOT / path.rstrip("/")).exists()) == []
