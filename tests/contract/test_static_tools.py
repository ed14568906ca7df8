"""Terraform's own checks and a checkov security scan of infra/."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from testbed.lifecycle.terraform import terraform_binary, write_cli_config
from testbed.paths import INFRA_DIR, ROOT

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def terraform(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(write_cli_config()), "TF_DATA_DIR": str(data_dir)}
    return subprocess.run([terraform_binary(), f"-chdir={INFRA_DIR}", *args], env=env, capture_output=True, text=True)


def test_terraform_fmt_check(tmp_path: Path) -> None:
    proc = terraform("fmt", "-check", "-recursive", "-diff", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_terraform_validate(tmp_path: Path) -> None:
    init = terraform("init", "-backend=false", "-input=false", "-no-color", data_dir=tmp_path)
    assert init.returncode == 0, init.stdout + init.stderr
    proc = terraform("validate", "-json", "-no-color", data_dir=tmp_path)
    result = json.loads(proc.stdout)
    assert result["valid"], result["diagnostics"]
    assert result["warning_count"] == 0, result["diagnostics"]


def test_checkov_finds_no_unsuppressed_failure() -> None:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `make test` (it installs it)")
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(INFRA_DIR),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(proc.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]] if report else []
    assert failed == []
    assert report["summary"]["passed"] > 100, "checkov ran its Terraform checks"
