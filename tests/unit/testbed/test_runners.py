"""`BACKEND=localstack` runs in Docker where an engine answers, else as a host process; the user can
pick, a wrong choice is named with the fix, and every path (the CLI, the preflight, the plugin) agrees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.lifecycle.backends import BackendError, LocalStackBackend, LocalStackHostBackend, get_backend
from testbed.lifecycle.runners import RunnerError, localstack_runner
from testbed.paths import ROOT


@pytest.mark.parametrize("runner", ["docker", "host", " Host "])
def test_a_named_runner_is_taken_as_named(runner: str) -> None:
    assert localstack_runner(runner) == runner.strip().lower()


def test_auto_without_an_engine_that_answers_is_the_host_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert localstack_runner("auto") == localstack_runner("") == "host"
    monkeypatch.delenv("LOCALSTACK_RUNNER", raising=False)
    backend = get_backend("localstack")
    assert isinstance(backend, LocalStackHostBackend)
    assert backend.name == "localstack" and backend.state_dir.name == "localstack-host"


def test_each_runner_builds_its_own_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSTACK_RUNNER", "docker")
    assert type(get_backend("localstack")) is LocalStackBackend
    monkeypatch.setenv("LOCALSTACK_RUNNER", "host")
    assert type(get_backend("localstack")) is LocalStackHostBackend


@pytest.mark.parametrize("runner", ["podman", "dockerr", "1"])
def test_an_unknown_runner_is_refused_with_the_choices(runner: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RunnerError, match="choose one of auto, docker, host"):
        localstack_runner(runner)
    monkeypatch.setenv("LOCALSTACK_RUNNER", runner)
    with pytest.raises(BackendError, match=f"LOCALSTACK_RUNNER='{runner}'"):
        get_backend("localstack")


def test_the_makefile_and_the_preflight_resolve_the_same_runner(tmp_path: Path) -> None:
    """`make` picks the venvs by what the module prints; the preflight checks what that runner needs."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "LOCALSTACK_RUNNER": "auto"}
    printed = subprocess.run(
        [sys.executable, "-S", "-m", "testbed.lifecycle.runners"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert printed.returncode == 0 and printed.stdout == "host\n"
    doctor = subprocess.run(
        [sys.executable, "-S", "-m", "testbed.operate.doctor", "--backend", "localstack"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "localstack runner  host process, no Docker" in doctor.stdout, doctor.stdout
    assert "python 3.13" in doctor.stdout and "ok    docker" not in doctor.stdout
    bad = subprocess.run(
        [sys.executable, "-S", "-m", "testbed.operate.doctor", "--backend", "localstack"],
        cwd=ROOT,
        env={**env, "LOCALSTACK_RUNNER": "kubernetes"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "LOCALSTACK_RUNNER='kubernetes'" in bad.stdout
    assert "fix: unset LOCALSTACK_RUNNER (auto) or set it to host" in bad.stdout
