"""How `BACKEND=localstack` runs: in Docker (compose, the official image) or as a host process.

Standard library only: the preflight (`testbed.operate.doctor`) runs it with the system's Python
before any venv exists. `LOCALSTACK_RUNNER` picks: `docker`, `host`, or `auto` (the default:
Docker when an engine answers, else the host process, which needs none).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from testbed.exceptions import TestbedError
from toolkit.settings import SETTINGS

RUNNERS = ("auto", "docker", "host")
RUNNER_VARIABLE = "LOCALSTACK_RUNNER"
DOCKER_TIMEOUT_S = 10


class RunnerError(TestbedError):
    """A LOCALSTACK_RUNNER this project does not know."""


def docker_engine_version(timeout_s: float = DOCKER_TIMEOUT_S) -> str | None:
    """The engine's version when one answers, else None (a docker CLI alone is not an engine)."""
    if shutil.which("docker") is None:
        return None
    try:
        answer = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (subprocess.TimeoutExpired, OSError):
        return None
    version = answer.stdout.strip()
    return version if answer.returncode == 0 and version else None


def localstack_runner(setting: str | None = None) -> str:
    """`docker` or `host`: what `setting` (else LOCALSTACK_RUNNER, else auto) resolves to here."""
    wanted = (setting if setting is not None else SETTINGS[RUNNER_VARIABLE].raw() or "auto").strip().lower() or "auto"
    if wanted not in RUNNERS:
        raise RunnerError(f"{RUNNER_VARIABLE}={wanted!r}: choose one of {', '.join(RUNNERS)}")
    if wanted != "auto":
        return wanted
    return "docker" if docker_engine_version() is not None else "host"


def main() -> int:
    """Print the runner `BACKEND=localstack` resolves to here (the Makefile picks its venvs by it)."""
    try:
        print(localstack_runner())
    except RunnerError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
