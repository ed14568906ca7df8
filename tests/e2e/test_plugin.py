"""The README's test files, run as a repository of its own would run them: the pytest plugin's
fixtures on BACKEND=external against an emulator the test starts itself and the testbed must leave
running, and a repository with Terraform of its own (tests/e2e/their_repo) on the embedded stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.lifecycle.backends import ExternalBackend
from testbed.lifecycle.backends.base import http_json
from testbed.lifecycle.backends.ministack_process import MINISTACK_LAUNCHER
from testbed.lifecycle.ports import LOOPBACK, free_port, wait_for_port
from testbed.paths import MINISTACK_VENV
from tests.docs import marked_block

pytestmark = pytest.mark.e2e


THEIR_REPO = Path(__file__).parent / "their_repo"


def readme_block(marker: str) -> str:
    """The fenced code between `<!-- marker:start -->` and `<!-- marker:end -->` in the manual."""
    block = marked_block(marker)
    return block.split("\n", 2)[2].rsplit("```", 1)[0]


def their_env(**settings: str) -> dict[str, str]:
    """The environment of a repository of its own: none of this session's pytest, AWS or testbed settings."""
    ours = ("PYTEST_", "AWS_", "BACKEND", "IAM", "INGRESS", "TESTBED_")
    return {k: v for k, v in os.environ.items() if not k.startswith(ours)} | settings


def run_their_pytest(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={repo.parent / 'tmp'}"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_readmes_test_file_passes_on_an_emulator_the_testbed_did_not_start(tmp_path: Path) -> None:
    port = free_port()
    # ministack's own launcher would bind its IoT listener to every interface; the project's keeps it on loopback
    emulator_env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "BIND_HOST": LOOPBACK,
        "IOT_MTLS_PORT": str(free_port()),
        "TMPDIR": str(tmp_path),
        "MINISTACK_SNAPSHOT_MARKER": str(tmp_path / "snapshot-at"),
    }
    with open(tmp_path / "emulator.log", "wb") as log:
        emulator = subprocess.Popen(
            [str(MINISTACK_VENV / "bin" / "python"), str(MINISTACK_LAUNCHER)],
            env=emulator_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert wait_for_port(port, 30), (tmp_path / "emulator.log").read_text()[-2000:]
        repo = tmp_path / "their-repo"
        repo.mkdir()
        (repo / "test_their_pipeline.py").write_text(readme_block("plugin-example"))
        result = run_their_pytest(repo, their_env(BACKEND="external", AWS_ENDPOINT_URL=f"http://{LOOPBACK}:{port}"))
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "2 passed" in result.stdout
        assert emulator.poll() is None, "the external backend left the emulator running"
        assert http_json(f"http://{LOOPBACK}:{port}/_ministack/health") is not None
        # and took away what the session deployed (under a suffix of its own), so the next session starts clean
        emulator_api = ExternalBackend(endpoint=f"http://{LOOPBACK}:{port}", state_dir=tmp_path / "check")
        assert emulator_api.client("lambda").list_functions()["Functions"] == []
        assert emulator_api.client("dynamodb").list_tables()["TableNames"] == []
    finally:
        emulator.terminate()
        emulator.wait(timeout=60)


def test_a_repository_with_terraform_of_its_own_passes_the_readmes_test_on_the_embedded_stack(tmp_path: Path) -> None:
    """Another rule (SQL, topic), another queue, function and table, reached through the README's
    outputs mapping and device topic; the rule's WHERE and SELECT are the bridge's to apply."""
    repo = tmp_path / "greenhouse"
    shutil.copytree(THEIR_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "pyproject.toml").write_text(readme_block("own-terraform-config"))
    (repo / "test_greenhouse.py").write_text(readme_block("own-terraform-test"))
    result = run_their_pytest(repo, their_env())
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
    assert not list((repo / "infra").glob("*tfstate*")), "the state is the testbed's, never in their folder"
    assert not (repo / "infra" / "backend_override.tf").exists()


def test_a_stack_that_fails_to_deploy_fails_the_session_with_terraforms_and_the_emulators_words(tmp_path: Path) -> None:
    """A CI log is often all there is: the failure says what Terraform said and how the emulator's log ends."""
    repo = tmp_path / "greenhouse"
    shutil.copytree(THEIR_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "pyproject.toml").write_text(readme_block("own-terraform-config"))
    (repo / "test_greenhouse.py").write_text(readme_block("own-terraform-test"))
    with open(repo / "infra" / "main.tf", "a") as broken:
        broken.write('\nresource "aws_sqs_queue" "broken" {\n  name = \n}\n')
    result = run_their_pytest(repo, their_env())
    assert result.returncode != 0
    assert "`terraform -chdir=" in result.stdout and "Invalid expression" in result.stdout, result.stdout[-6000:]
    assert "ministack.log:" in result.stdout, result.stdout[-6000:]
    assert "Traceback" not in result.stdout
