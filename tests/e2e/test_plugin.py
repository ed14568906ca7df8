"""The README's test file, run as a repository of its own would run it: the pytest plugin's
fixtures, on BACKEND=external against an emulator the test starts itself and the testbed must leave
running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.lifecycle.backends import ExternalBackend
from testbed.lifecycle.backends.base import http_json
from testbed.lifecycle.backends.embedded import MINISTACK_LAUNCHER
from testbed.lifecycle.ports import LOOPBACK, free_port, wait_for_port
from testbed.paths import MINISTACK_VENV, ROOT

pytestmark = pytest.mark.e2e


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- plugin-example:start -->")[1].split("<!-- plugin-example:end -->")[0]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


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
        (repo / "test_their_pipeline.py").write_text(readme_example())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "AWS_", "BACKEND", "IAM"))}
        env |= {"BACKEND": "external", "AWS_ENDPOINT_URL": f"http://{LOOPBACK}:{port}"}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'tmp'}"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
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
