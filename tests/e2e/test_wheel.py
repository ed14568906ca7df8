"""`pip install` of the project's wheel into a clean venv, used from a folder of its own: the three
console scripts, the shipped fleets, scenarios and infra/, completion, and nothing written into
site-packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.paths import ROOT

pytestmark = pytest.mark.e2e


def run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "TESTBED_"))}
    return subprocess.run(cmd, cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=600)


def test_the_wheel_installs_into_a_clean_venv_and_its_commands_work_from_any_folder(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(dist)], ROOT)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    work = tmp_path / "their-project"
    work.mkdir()
    bin_dir = venv / "bin"
    for script in ("testbed", "testbed-simulator", "testbed-bridge"):
        shown = run([str(bin_dir / script), "--help"], work)
        assert shown.returncode == 0 and "usage:" in shown.stdout, (script, shown.stderr[-2000:])

    dry = run(
        [str(bin_dir / "testbed-simulator"), "run", "--fleet", "simulator/fleets/smoke.yaml", "--duration", "2",
         "--dry-run", "out.jsonl"],
        work,
        SIMULATOR_SIGNING_KEY="k",
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert len((work / "out.jsonl").read_text().splitlines()) >= 32, "the shipped fleet, run from another folder"

    missing = run([str(bin_dir / "testbed"), "simulate", "nosuch"], work)
    shipped_names = "shipped: api-chaos, aws-quotas, burst, chaos, faults, smoke, soak, steady"
    assert missing.returncode == 1 and shipped_names in missing.stdout

    shipped = run(
        [str(bin_dir / "python"), "-c",
         "from testbed.paths import INFRA_DIR, STATE_ROOT, BUILD_DIR; import json; "
         "print(json.dumps([sorted(p.name for p in INFRA_DIR.rglob('*.tf*')), str(STATE_ROOT), str(BUILD_DIR)]))"],
        work,
    )  # fmt: skip
    assert shipped.returncode == 0, shipped.stderr
    files, state, build = eval(shipped.stdout)  # a JSON list is a Python literal too
    assert {"processor.tf", "iot.tf", "variables.tf", "aws_target.tftest.hcl"} <= set(files)
    assert Path(state) == work / ".testbed" and Path(build).is_relative_to(work), "state and builds go to the cwd"

    completions = tmp_path / "completions.txt"
    completed = run(
        [str(bin_dir / "testbed")],
        work,
        _ARGCOMPLETE="1",
        COMP_LINE="testbed st",
        COMP_POINT="10",
        _ARGCOMPLETE_IFS="\v",
        _ARGCOMPLETE_STDOUT_FILENAME=str(completions),
    )
    assert completed.returncode == 0 and completions.read_text().split("\v") == ["status "]
    written = [p for p in (venv / "lib").rglob("*") if p.name in (".testbed", "reports", "out.jsonl")]
    assert written == [], "nothing is written into site-packages"
