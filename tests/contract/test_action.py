"""action.yml, the composite action users add to their workflow: valid for GitHub, its steps are
commands the test suite runs, and the project's own workflow uses it."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

from testbed.cli import build_parser
from testbed.paths import ROOT
from tests.contract.schemas import assert_valid_and_broken_copy_refused

ACTION = ROOT / "action.yml"
# What its steps may run: each is run by the test suite (`make deps venvs` by `make test` and
# .ci/run; `up` and `env --dotenv` by tests/e2e and tests/unit/testbed/test_cli_checks.py).
RUN_BY_THE_TESTS = {
    ("make", "deps", "venvs"),
    ("bin/testbed", "up", "--no-parity"),
    ("bin/testbed", "env", "--dotenv"),
}


def action() -> dict[Any, Any]:
    return dict(yaml.safe_load(ACTION.read_text()))


def test_the_action_follows_githubs_schema(tmp_path: Path) -> None:
    broken = action()
    broken["runs"]["using"] = "composite-ish"
    assert_valid_and_broken_copy_refused(ACTION, "vendor.github-actions", broken, tmp_path)


def test_its_steps_are_valid_bash_running_only_commands_the_tests_run() -> None:
    ran = set()
    for step in action()["runs"]["steps"]:
        if "run" not in step:
            continue
        assert step["shell"] == "bash"
        assert subprocess.run(["bash", "-n"], input=step["run"], capture_output=True, text=True).returncode == 0
        for line in step["run"].replace("\\\n", " ").splitlines():
            words = [
                w.replace('"$GITHUB_ACTION_PATH/', "").replace("$GITHUB_ACTION_PATH/", "")
                for w in shlex.split(line, comments=True)
            ]
            if words[:1] == ["make"]:
                ran.add(tuple(w for w in words if w in ("make", "deps", "venvs")))
            for i, word in enumerate(words):
                if word.endswith("bin/testbed"):
                    ran.add(("bin/testbed", *[w for w in words[i + 1 :] if w.startswith("-") or w.isalpha()][:2]))
    assert ran == RUN_BY_THE_TESTS
    parser = build_parser()
    for command in RUN_BY_THE_TESTS:
        if command[0] == "bin/testbed":
            parser.parse_args(list(command[1:]))


def test_a_failed_start_uploads_the_stacks_logs_and_the_project_uses_its_own_action() -> None:
    upload = next(
        step for step in action()["runs"]["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")
    )
    assert upload["if"] == "failure()" and "run/*.log" in upload["with"]["path"]
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "e2e.yml").read_text())
    steps = workflow["jobs"]["action"]["steps"]
    assert any(step.get("uses") == "./" for step in steps)
    assert "bin/testbed simulate smoke --no-up" in [step.get("run") for step in steps]
