"""`doctor` names what a machine lacks, with the fix, using nothing but the standard library."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.lifecycle.ports import LOOPBACK, free_port
from testbed.operate.doctor import check_disk, check_ports, check_python, required_terraform
from testbed.paths import INFRA_DIR, ROOT


def doctor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The module as `make doctor` runs it, with site-packages off (`-S`): as before any venv exists."""
    return subprocess.run(
        [sys.executable, "-S", "-m", "testbed.operate.doctor", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def free_ports_env() -> dict[str, str]:
    return {
        **os.environ,
        "MINISTACK_PORT": str(free_port()),
        "MQTT_PORT": str(free_port()),
        "IOT_MQTT_PORT": str(free_port()),
    }


def test_a_ready_machine_passes_with_the_standard_library_alone(tmp_path: Path) -> None:
    env = {**free_ports_env(), "EMBEDDED_STATE_DIR": str(tmp_path)}
    result = doctor(env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("python", "terraform", "provider", "mosquitto", "disk"):
        assert f"  ok    {check}" in result.stdout
    assert result.stdout.strip().endswith("doctor: ready")


def test_missing_tools_are_each_named_with_their_fix(tmp_path: Path) -> None:
    """No terraform or tofu on PATH, a broker binary that is not there, no MQTT clients."""
    env = {
        **free_ports_env(),
        "PATH": str(tmp_path),
        "TERRAFORM": "",
        "MOSQUITTO": str(tmp_path / "mosquitto"),
        "EMBEDDED_STATE_DIR": str(tmp_path),
    }
    result = doctor("--tests", env=env)
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  terraform     neither terraform nor tofu is on PATH" in out
    assert "fix: install Terraform" in out and "OpenTofu" in out
    assert f"FAIL  mosquitto     MOSQUITTO={tmp_path / 'mosquitto'} is not a file" in out
    assert "FAIL  mqtt clients  mosquitto_pub, mosquitto_sub not on PATH" in out
    assert "fix: make deps (it installs what is missing), or Debian/Ubuntu: sudo apt-get install mosquitto" in out
    assert "FAIL  chromium      no Chromium on PATH" in out
    assert out.strip().endswith("doctor: 4 problem(s)")


def test_a_port_taken_by_another_program_is_named_with_its_variable(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind((LOOPBACK, 0))
        other.listen()
        port = other.getsockname()[1]
        env = {**free_ports_env(), "MQTT_PORT": str(port), "EMBEDDED_STATE_DIR": str(tmp_path)}
        result = doctor(env=env)
    assert result.returncode == 1
    assert f"FAIL  port {port}  taken by another program (MQTT_PORT)" in result.stdout
    assert f"fix: stop what listens on 127.0.0.1:{port}, or pick another port: MQTT_PORT=<port> make" in result.stdout


def test_a_port_held_while_the_testbeds_own_stack_runs_is_fine(tmp_path: Path) -> None:
    """`make up` on a running stack reuses it: its ports are not a problem."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "mosquitto.pid").write_text(f"{os.getpid()}\n")
    with socket.socket() as ours:
        ours.bind((LOOPBACK, 0))
        ours.listen()
        port = ours.getsockname()[1]
        (finding,) = check_ports({"MQTT_PORT": port}, run_dir)
    assert finding.ok and "in use while this testbed's stack runs" in finding.detail


def test_a_stale_pid_file_does_not_excuse_a_taken_port(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "ministack.pid").write_text(f"{dead.pid}\n")
    with socket.socket() as other:
        other.bind((LOOPBACK, 0))
        other.listen()
        (finding,) = check_ports({"MINISTACK_PORT": other.getsockname()[1]}, tmp_path)
    assert not finding.ok


def test_an_old_python_is_refused_with_the_version_it_needs() -> None:
    (finding,) = check_python((3, 10, 12))
    assert not finding.ok and finding.detail == "3.10.12 (needs 3.11+)" and "PYTHON=python3.11" in finding.fix


def test_too_little_disk_is_named_with_the_fix(tmp_path: Path) -> None:
    free_gb = shutil.disk_usage(tmp_path).free / 1e9
    finding = check_disk(tmp_path, need_gb=free_gb * 2)
    assert not finding.ok and "TESTBED_STATE_DIR" in finding.fix
    assert check_disk(tmp_path, need_gb=0).ok


def test_the_terraform_version_checked_is_the_one_infra_requires() -> None:
    """1.11: the signing key is written through an ephemeral resource and a write-only argument."""
    assert required_terraform() == (1, 11, 0)
    assert 'required_version = ">= 1.11.0"' in (INFRA_DIR / "versions.tf").read_text()


@pytest.mark.skipif(shutil.which("docker") is None, reason="checks the docker CLI without an engine behind it")
def test_compose_backends_need_an_engine_that_answers(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "LOCALSTACK_RUNNER": "docker"}
    result = doctor("--backend", "localstack", env=env)
    assert result.returncode == 1
    assert re.search(rf"FAIL  docker +no Docker engine answers at unix://{tmp_path}/no-engine.sock", result.stdout)
    assert "use BACKEND=embedded" in result.stdout
