"""Every command the README's code blocks run is one its command line accepts today (a renamed
option or subcommand fails here, before a user meets it), and runs as printed from a fresh shell in
the checkout: through `bin/` (the project's venv, none activated), never a bare `python -m`."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ingress.__main__ import build_parser as cli_of_ingress
from simulator.cli import build_parser as cli_of_simulator
from testbed.cli import build_parser as cli_of_testbed
from testbed.paths import ROOT
from tests.docs import PAGES, manual_text

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "testbed": cli_of_testbed,
    "simulator": cli_of_simulator,
    "ingress": cli_of_ingress,
}
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:eval \"\$\()?bin/(testbed|simulator|ingress)\b([^)]*)")
# A command that needs an activated venv: ModuleNotFoundError in a fresh shell.
NEEDS_A_VENV = re.compile(r"(?<![\w/])python3? -m (testbed|simulator|ingress)\b(?![.\w])")


def code_blocks(path: Path = ROOT / "README.md") -> list[str]:
    return re.findall(r"^```(?:bash|sh|console)?\n(.*?)^```", path.read_text(), flags=re.MULTILINE | re.DOTALL)


def readme_commands() -> list[tuple[str, list[str]]]:
    blocks = [block for page in PAGES for block in code_blocks(page)]
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            found = COMMAND.match(line.strip())
            if found:
                commands.append((found.group(1), shlex.split(found.group(2), comments=True)))
    return commands


def test_no_command_in_the_readme_or_docs_needs_an_activated_venv() -> None:
    blocks = [
        block for path in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))) for block in code_blocks(path)
    ]
    assert [line for block in blocks for line in block.splitlines() if NEEDS_A_VENV.search(line)] == []


def test_each_program_runs_from_a_fresh_shell_in_the_checkout(tmp_path: Path) -> None:
    """No venv on PATH, none activated, another working directory holding packages of its own with
    the project's names (a user's `telemetry/`): bin/<program> still runs the project's."""
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for part in ("telemetry", "toolkit", "simulator", "ingress", "testbed"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "__init__.py").write_text("raise SystemExit('the working directory shadowed the project')\n")
    for program in PARSERS:
        shown = subprocess.run(
            [str(ROOT / "bin" / program), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert shown.returncode == 0 and f"usage: {program}" in shown.stdout, shown.stderr[-2000:]


def test_the_readme_shows_commands_of_each_kind() -> None:
    assert {program for program, _ in readme_commands()} >= {"testbed", "simulator"}


@pytest.mark.parametrize(
    ("program", "args"), readme_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_each_readme_command_parses(program: str, args: list[str]) -> None:
    try:
        PARSERS[program]().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"bin/{program} {' '.join(args)}: the command line refuses it (exit {exc.code})")


def test_every_project_path_the_readme_names_exists() -> None:
    """Paths in backticks that start with a part's folder (`testbed/runs/report.py`, `infra/`): a
    moved or renamed file fails here instead of leaving the README pointing at nothing."""
    folders = "infra|processor|telemetry|simulator|ingress|testbed|tests"
    named = set(re.findall(rf"`((?:{folders})/[\w./-]*)`", manual_text()))
    assert len(named) > 10, "the README names the project's files"
    assert sorted(path for path in named if not (ROOT / path.rstrip("/")).exists()) == []
