"""Where a report came from, so that two reports can be compared: the report's schema version, the
backend and what served the AWS APIs, Terraform's and the AWS provider's versions, the testbed's
version and commit, the scenario's seed and a hash of its fleet file. A part that cannot be read
(no git checkout, Terraform gone) is recorded as unknown, never guessed."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from testbed.lifecycle.stack import Stack
from testbed.paths import ROOT
from testbed.runs.scenario import Scenario

# Bumped when a field of report.json changes meaning or goes; a new field alone does not bump it.
REPORT_SCHEMA_VERSION = 4
UNKNOWN = "unknown"
# Terraform and git answer in well under a second; past this, the answer is recorded as unknown.
ASK_TIMEOUT_S = 30.0


def _ask(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=ASK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commit() -> str:
    """The checkout's commit, `+changes` when files differ from it; unknown where the testbed is not
    a git checkout of its own (installed in a venv inside another repository: never that one's)."""
    top = _ask(["git", "rev-parse", "--show-toplevel"], ROOT)
    head = _ask(["git", "rev-parse", "HEAD"], ROOT)
    if top is None or head is None or Path(top).resolve() != ROOT.resolve():
        return UNKNOWN
    changed = _ask(["git", "status", "--porcelain", "--untracked-files=no"], ROOT)
    return f"{head}+changes" if changed else head


def terraform_versions(stack: Stack) -> dict[str, str]:
    """Terraform's version and each provider's the stack's working directory selected."""
    said = _ask(
        [stack.terraform.binary, f"-chdir={stack.terraform.infra_dir}", "version", "-json"], ROOT, stack.terraform.env
    )
    try:
        found = json.loads(said) if said else {}
    except ValueError:
        found = {}
    providers = found.get("provider_selections") or {}
    return {
        "terraform": str(found.get("terraform_version", UNKNOWN)),
        **{f"provider {name.rsplit('/', 2)[-2]}/{name.rsplit('/', 1)[-1]}": str(v) for name, v in providers.items()},
    }


def fleet_sha256(scenario: Scenario) -> str:
    try:
        return hashlib.sha256(scenario.fleet.read_bytes()).hexdigest()
    except OSError:
        return UNKNOWN


def testbed_version() -> str:
    try:
        return metadata.version("iot-pipeline-testbed")
    except metadata.PackageNotFoundError:
        return UNKNOWN


def provenance(stack: Stack, scenario: Scenario) -> dict[str, Any]:
    """The report's `provenance` section."""
    return {
        "report_schema": REPORT_SCHEMA_VERSION,
        "backend": stack.backend.name,
        "emulator": stack.backend.emulator(),
        **terraform_versions(stack),
        "testbed": testbed_version(),
        "commit": commit(),
        "seed": scenario.seed,
        "fleet": str(scenario.fleet),
        "fleet_sha256": fleet_sha256(scenario),
    }
