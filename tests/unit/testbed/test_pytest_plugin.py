"""The pytest plugin loads in every session of an environment that has the project installed: a
project's own fixtures, options and tests must not notice it until they ask for its fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_pytest(folder: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "BACKEND", "IAM", "INGRESS", "TESTBED_"))
    } | extra
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_projects_own_stack_fixture_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("import pytest\n\n@pytest.fixture\ndef stack():\n    return [1, 2, 3]\n")
    (tmp_path / "test_theirs.py").write_text("def test_pop(stack):\n    assert stack.pop() == 3\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:]


def test_compose_backends_refuse_parallel_workers_by_name(tmp_path: Path) -> None:
    (tmp_path / "test_stack.py").write_text("def test_up(stack):\n    pass\n")
    result = run_pytest(tmp_path, "-n", "2", "--testbed-backend", "localstack", LOCALSTACK_RUNNER="docker")
    assert result.returncode != 0
    assert "runs one compose stack on fixed ports" in result.stdout, result.stdout[-3000:]


def test_settings_that_cannot_work_fail_the_session_once_by_name_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "test_stack.py").write_text("def test_up(stack):\n    pass\n")
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestbed_infra_dir = "terraform"\n')
    result = run_pytest(tmp_path)
    assert result.returncode != 0
    assert f"{tmp_path / 'terraform'} (TESTBED_INFRA_DIR) is not a folder" in result.stdout, "relative to the rootdir"
    (tmp_path / "terraform").mkdir()
    (tmp_path / "terraform" / "main.tf").write_text("")
    result = run_pytest(tmp_path, "--testbed-outputs", "ingest_queue_url")
    assert "TESTBED_OUTPUTS: cannot read 'ingest_queue_url'" in result.stdout, result.stdout[-3000:]
    result = run_pytest(tmp_path, "--testbed-device-topic", "greenhouse/climate")
    assert "TESTBED_DEVICE_TOPIC: device topic 'greenhouse/climate'" in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in result.stdout
