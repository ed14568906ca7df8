"""Preflight: what this machine lacks for the testbed, each problem named with its fix.

Standard library only (and modules of this project that are): `make up`, `make demo` and
`make test` run it with the system's Python before any virtual environment is built or any
process started, so a missing Terraform or a taken port is named in a second, not after minutes
of installs. `python -m testbed.operate.doctor --help` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ingress.broker import MOSQUITTO_INSTALL, find_mosquitto
from testbed.lifecycle.interpreters import InterpreterError, find_python
from testbed.lifecycle.ports import port_in_use
from testbed.lifecycle.runners import RUNNER_VARIABLE, RunnerError, docker_engine_version, localstack_runner
from testbed.lifecycle.terraform import TerraformError, find_mirror, terraform_binary
from testbed.paths import INFRA_DIR, ROOT, STATE_ROOT
from toolkit.settings import SETTINGS

MIN_PYTHON = (3, 11)
# The three venvs take ~0.9 GB; a stack's state, logs and Terraform's provider copy the rest.
MIN_FREE_DISK_GB = 2.0
TERRAFORM_INSTALL = (
    "install Terraform (https://developer.hashicorp.com/terraform/install; macOS: brew install "
    "hashicorp/tap/terraform) or OpenTofu (https://opentofu.org/docs/intro/install/), or set TERRAFORM to the binary"
)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_INSTALL = (
    "make deps DEPS_FLAGS=--tests, or Debian/Ubuntu: sudo apt-get install chromium; Fedora: sudo dnf install "
    "chromium; macOS: brew install --cask chromium"
)
COMPOSE_BACKENDS = ("localstack", "ministack-docker")


@dataclass(frozen=True)
class Finding:
    """One check's result: what was found, and when it is a problem, how to fix it."""

    check: str
    ok: bool
    detail: str
    fix: str = ""


def check_python(version: Sequence[int] = tuple(sys.version_info[:3])) -> list[Finding]:
    shown = ".".join(map(str, version))
    if tuple(version[:2]) < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        return [
            Finding(
                "python", False, f"{shown} (needs {need}+)", f"install Python {need}+ and run make PYTHON=python{need}"
            )
        ]
    found = [Finding("python", True, f"{shown} at {sys.executable}")]
    try:
        import ensurepip  # noqa: F401, PLC0415  (Debian splits it into python3-venv)
    except ImportError:
        found.append(Finding("venv", False, "the venv module cannot install pip", "sudo apt-get install python3-venv"))
    return found


def required_terraform(versions_tf: Path = INFRA_DIR / "versions.tf") -> tuple[int, ...]:
    """The `required_version = ">= X.Y"` of infra/, so the check and the code cannot disagree."""
    match = re.search(r'required_version\s*=\s*">=\s*([0-9.]+)"', versions_tf.read_text())
    return tuple(int(part) for part in match.group(1).split(".")) if match else (0,)


def check_terraform() -> list[Finding]:
    try:
        binary = terraform_binary()
    except TerraformError:
        return [Finding("terraform", False, "neither terraform nor tofu is on PATH", TERRAFORM_INSTALL)]
    try:
        out = subprocess.run([binary, "version", "-json"], capture_output=True, text=True, timeout=60).stdout
        version = str(json.loads(out)["terraform_version"])
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
        return [Finding("terraform", False, f"`{binary} version -json` did not answer ({exc})", TERRAFORM_INSTALL)]
    need = required_terraform()
    have = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    found = [
        Finding("terraform", True, f"{binary} {version}")
        if have >= need
        else Finding(
            "terraform", False, f"{binary} {version} (infra/ needs >= {'.'.join(map(str, need))})", TERRAFORM_INSTALL
        )
    ]
    mirror = find_mirror()
    source = (
        f"filesystem mirror {mirror} (no network needed)"
        if mirror
        else "the registry: the first `make up` downloads hashicorp/aws (network needed once)"
    )
    found.append(Finding("provider", True, source))
    return found


def check_mosquitto(for_tests: bool) -> list[Finding]:
    configured = SETTINGS["MOSQUITTO"].raw()
    broker = find_mosquitto()
    if broker is None:
        what = f"MOSQUITTO={configured} is not a file" if configured else "mosquitto is not installed"
        found = [Finding("mosquitto", False, what, MOSQUITTO_INSTALL)]
    else:
        found = [Finding("mosquitto", True, broker)]
    if for_tests:
        missing = [tool for tool in ("mosquitto_pub", "mosquitto_sub") if shutil.which(tool) is None]
        found.append(
            Finding(
                "mqtt clients",
                False,
                f"{', '.join(missing)} not on PATH (the tests publish with them)",
                MOSQUITTO_INSTALL,
            )
            if missing
            else Finding("mqtt clients", True, "mosquitto_pub, mosquitto_sub")
        )
    return found


def find_chromium() -> str | None:
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def check_browser() -> Finding:
    """The HTML report's test renders it in headless Chromium."""
    browser = find_chromium()
    if browser is None:
        return Finding(
            "chromium", False, "no Chromium on PATH (the HTML report's test renders in it)", CHROMIUM_INSTALL
        )
    return Finding("chromium", True, browser)


def _recorded_pids(run_dir: Path) -> set[int]:
    """Live PIDs of the servers this testbed recorded in its run folder (its own running stack)."""
    pids = set()
    for pid_file in run_dir.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
            pids.add(pid)
    return pids


def check_ports(ports: dict[str, int], run_dir: Path) -> list[Finding]:
    """Each port free, or held while this testbed's own stack runs (which `make up` reuses)."""
    found = []
    ours = _recorded_pids(run_dir)
    for variable, port in ports.items():
        if not port_in_use(port):
            found.append(Finding(f"port {port}", True, f"free ({variable})"))
        elif ours:
            found.append(Finding(f"port {port}", True, f"in use while this testbed's stack runs (pids {sorted(ours)})"))
        else:
            found.append(
                Finding(
                    f"port {port}",
                    False,
                    f"taken by another program ({variable})",
                    f"stop what listens on 127.0.0.1:{port}, or pick another port: {variable}=<port> make ...",
                )
            )
    return found


def check_disk(path: Path, need_gb: float = MIN_FREE_DISK_GB) -> Finding:
    free_gb = shutil.disk_usage(path).free / 1e9
    if free_gb < need_gb:
        return Finding(
            "disk",
            False,
            f"{free_gb:.1f} GB free at {path} (needs {need_gb:.0f} GB)",
            "free disk space, or set TESTBED_STATE_DIR to a larger disk",
        )
    return Finding("disk", True, f"{free_gb:.1f} GB free at {path}")


def check_docker() -> Finding:
    """The compose backends need an engine that answers, not only the docker CLI."""
    if shutil.which("docker") is None:
        return Finding(
            "docker", False, "the docker CLI is not installed", "install Docker, or use BACKEND=embedded (no Docker)"
        )
    version = docker_engine_version()
    if version is None:
        where = SETTINGS["DOCKER_HOST"].raw() or "the default socket"
        return Finding(
            "docker",
            False,
            f"no Docker engine answers at {where}",
            "start Docker Desktop or the docker service (sudo systemctl start docker), or use BACKEND=embedded",
        )
    return Finding("docker", True, f"engine {version}")


def check_localstack_runner() -> list[Finding]:
    """Which way BACKEND=localstack runs here, and what that way needs."""
    try:
        runner = localstack_runner()
    except RunnerError as exc:
        return [Finding("localstack runner", False, str(exc), f"unset {RUNNER_VARIABLE} (auto) or set it to host")]
    if runner == "docker":
        return [Finding("localstack runner", True, "docker (compose, the official image)"), check_docker()]
    return [
        Finding("localstack runner", True, f"host process, no Docker ({RUNNER_VARIABLE}=docker for the image)"),
        *check_mosquitto(False),
        check_interpreter("3.13", "LocalStack 4.14.0 runs on it"),
        check_interpreter("3.12", "the Lambda python3.12 runtime"),
    ]


def check_interpreter(version: str, needed_for: str) -> Finding:
    """A Python of `version` for the LocalStack backend (LocalStack itself, or Lambda's runtime)."""
    try:
        return Finding(f"python {version}", True, f"{find_python(version)} ({needed_for})")
    except InterpreterError as exc:
        detail, _, fix = str(exc).partition(". ")
        return Finding(f"python {version}", False, f"{detail} ({needed_for})", fix)


def _port(variable: str) -> int:
    return SETTINGS[variable].number()


def diagnose(backend: str, for_tests: bool) -> list[Finding]:
    """Every check that applies to `backend` (each applies infra/ with Terraform); `for_tests` adds
    the test tools and skips the fixed ports (the tests bring up their own stack on free ones)."""
    found = check_python() + check_terraform()
    if for_tests:
        found += check_mosquitto(True)
        found += [
            check_interpreter("3.13", "LocalStack 4.14.0 runs on it"),
            check_interpreter("3.12", "the Lambda python3.12 runtime"),
            check_browser(),
        ]
    if backend == "localstack":
        found += [f for f in check_localstack_runner() if f.check not in {x.check for x in found}]
    elif backend in ("embedded", "external") and not for_tests:
        found += check_mosquitto(False)
    elif backend in COMPOSE_BACKENDS:
        found.append(check_docker())
    if backend == "embedded" and not for_tests:
        ports = {
            "MINISTACK_PORT": _port("MINISTACK_PORT"),
            "MQTT_PORT": _port("MQTT_PORT"),
            "IOT_MQTT_PORT": _port("IOT_MQTT_PORT"),
        }
        state = SETTINGS["EMBEDDED_STATE_DIR"].path(STATE_ROOT / "embedded")
        found += check_ports(ports, state / "run")
    found.append(check_disk(ROOT))
    return found


def report(findings: Sequence[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = []
    for f in findings:
        lines.append(f"  {'ok  ' if f.ok else 'FAIL'}  {f.check:<{width}}  {f.detail}")
        if not f.ok:
            lines.append(f"  {'':4}  {'':<{width}}  fix: {f.fix}")
    problems = sum(not f.ok for f in findings)
    lines.append(f"doctor: {problems} problem(s)" if problems else "doctor: ready")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="doctor", description="Check this machine before the testbed installs or starts anything."
    )
    parser.add_argument(
        "--backend",
        default=SETTINGS["BACKEND"].text(),
        choices=("embedded", "external", *COMPOSE_BACKENDS, "aws"),
        help="the backend to check for",
    )
    parser.add_argument("--tests", action="store_true", help="what `make test` needs (test tools; no fixed ports)")
    parser.add_argument("--json", action="store_true", help="the findings as JSON (check, ok, detail, fix)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    findings = diagnose(args.backend, args.tests)
    print(json.dumps([asdict(f) for f in findings]) if args.json else report(findings))
    return 0 if all(f.ok for f in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
