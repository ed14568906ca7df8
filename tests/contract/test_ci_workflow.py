""".github/workflows/e2e.yml: valid for GitHub, and it runs what the README and the Makefile say.

actionlint is not used: its PyPI package is a source distribution that downloads the binary from
GitHub while it builds, which this project's machines cannot reach.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from testbed.operate.doctor import required_terraform
from testbed.paths import ROOT
from tests.contract.schemas import assert_valid_and_broken_copy_refused
from tests.docs import manual_text

WORKFLOW = ROOT / ".github" / "workflows" / "e2e.yml"
MAKEFILE = ROOT / "Makefile"


def workflow() -> dict[Any, Any]:
    return dict(yaml.safe_load(WORKFLOW.read_text()))


def steps() -> list[dict[str, Any]]:
    return list(workflow()["jobs"]["e2e"]["steps"])


def runs() -> str:
    return "\n".join(step.get("run", "") for step in steps())


def test_the_workflow_follows_githubs_schema(tmp_path: Path) -> None:
    broken = workflow()
    broken["jobs"]["e2e"]["runs_on"] = broken["jobs"]["e2e"].pop("runs-on")
    assert_valid_and_broken_copy_refused(WORKFLOW, "vendor.github-workflows", broken, tmp_path)


def test_every_run_script_is_valid_bash() -> None:
    for step in steps():
        if "run" in step:
            result = subprocess.run(["bash", "-n"], input=step["run"], capture_output=True, text=True)
            assert result.returncode == 0, f"{step.get('name')}: {result.stderr}"


def test_it_runs_the_readmes_test_command_and_the_smoke_and_faults_scenarios() -> None:
    readme = manual_text()
    assert "make test" in readme
    commands = [line.split(" PYTHON=")[0] for line in runs().splitlines() if line.startswith("make ")]
    assert commands[:3] == ["make test", "make simulate SCENARIO=smoke", "make simulate SCENARIO=faults"]
    targets = set(re.findall(r"^([a-z0-9-]+):", MAKEFILE.read_text(), re.MULTILINE))
    assert {c.split()[1] for c in commands} <= targets
    for scenario in ("smoke", "faults"):
        assert (ROOT / "testbed" / "runs" / "scenarios" / f"{scenario}.yaml").is_file()


def test_it_installs_what_the_tests_need_at_versions_the_project_accepts() -> None:
    by_action = {step["uses"].split("@")[0]: step for step in steps() if "uses" in step}
    python = by_action["actions/setup-python"]["with"]["python-version"]
    assert tuple(map(int, python.split("."))) >= (3, 11)
    terraform = by_action["hashicorp/setup-terraform"]["with"]
    assert tuple(map(int, terraform["terraform_version"].split("."))) >= required_terraform()
    assert terraform["terraform_wrapper"] is False, "the wrapper changes the output the testbed parses"
    assert "apt-get install -y -qq mosquitto mosquitto-clients" in runs()
    assert "systemctl disable --now mosquitto" in runs(), "the packaged broker would hold port 1883"


def test_reports_are_uploaded_and_summarised_even_when_a_step_failed() -> None:
    by_name = {step.get("name"): step for step in steps()}
    upload = by_name["Upload the reports"]
    assert upload["uses"].startswith("actions/upload-artifact@") and upload["with"]["path"] == "reports/"
    summary = by_name["Reports on the run's page"]
    assert 'cat "$report" >> "$GITHUB_STEP_SUMMARY"' in summary["run"] and "reports/*/report.md" in summary["run"]
    assert upload["if"] == summary["if"] == by_name["Stop the stack"]["if"] == "always()"


def test_the_venv_cache_covers_every_venv_the_makefile_builds() -> None:
    cache = next(step for step in steps() if step.get("uses", "").startswith("actions/cache@"))
    cached = set(cache["with"]["path"].split())
    built = set(
        re.findall(
            r"^(\.venv[a-z-]*)/\.installed:",
            MAKEFILE.read_text()
            .replace("$(VENV)", ".venv")
            .replace("$(MINISTACK_VENV)", ".venv-ministack")
            .replace("$(CHECKOV_VENV)", ".venv-checkov"),
            re.MULTILINE,
        )
    )
    assert cached == built == {".venv", ".venv-ministack", ".venv-checkov"}
    assert "pyproject.toml" in cache["with"]["key"] and "Makefile" in cache["with"]["key"]
