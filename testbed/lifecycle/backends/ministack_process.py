"""ministack's process as the embedded backend runs it: its environment (loopback, persistence, a
bounded Lambda pool), the port its saved state was made on, the bundle copies it leaves behind, and
saving its state without stopping it."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import time
from pathlib import Path

from testbed.lifecycle.backends.base import BackendError
from testbed.lifecycle.ports import LOOPBACK
from testbed.lifecycle.processes import ManagedProcess
from toolkit.settings import SETTINGS

logger = logging.getLogger(__name__)

# Runs ministack with its MQTT-over-TLS listener pinned to loopback (see the module).
MINISTACK_LAUNCHER = Path(__file__).with_name("ministack_loopback.py")
# ministack sizes its Lambda worker pool from RAM (~585 here); a bounded pool keeps memory sane.
LAMBDA_ACCOUNT_CONCURRENCY = 32
# The port in a queue URL of ministack's saved SQS state.
QUEUE_URL_PORT = re.compile(r"http://(?:localhost|127\.0\.0\.1):(\d+)/")
# What ministack names its unpacked copies of a function's bundle under TMPDIR.
MINISTACK_LAMBDA_COPY_PREFIX = "ministack-lambda-"


def ministack_environment(
    state_dir: Path, port: int, iot_mqtt_port: int, region: str, iam: str, snapshot_marker: Path
) -> dict[str, str]:
    """What ministack runs with: on loopback, its state and S3 data kept under `state_dir`."""
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "BIND_HOST": LOOPBACK,
        "PYTHONFAULTHANDLER": "1",  # abort_emulator: SIGABRT writes every thread's stack to the log
        "MINISTACK_REGION": region,
        "PERSIST_STATE": "1",
        "STATE_DIR": str(state_dir / "ministack/state"),
        "S3_PERSIST": "1",
        "S3_DATA_DIR": str(state_dir / "ministack/s3"),
        "TMPDIR": str(state_dir / "tmp"),
        "LAMBDA_ACCOUNT_CONCURRENCY": str(LAMBDA_ACCOUNT_CONCURRENCY),
        "MINISTACK_SNAPSHOT_MARKER": str(snapshot_marker),
        # IoT Core's MQTT over TLS with X.509 client certificates (the launcher keeps it on loopback)
        "IOT_MTLS_PORT": str(iot_mqtt_port),
        "LOG_LEVEL": SETTINGS["MINISTACK_LOG_LEVEL"].text(),
        "AUTH": "true" if iam == "enforce" else "false",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    return env


def state_port_file(state_dir: Path) -> Path:
    """The port the emulator last served on: its queue URLs (and Terraform's ids) carry it."""
    return state_dir / "ministack" / "port"


def recorded_port(state_dir: Path) -> str | None:
    """The recorded port, or for state from before it was recorded, the port in its queue URLs."""
    recorded = state_port_file(state_dir)
    if recorded.exists():
        return recorded.read_text().strip() or None
    queues = state_dir / "ministack" / "state" / "sqs.json"
    found = QUEUE_URL_PORT.search(queues.read_text(errors="replace")) if queues.exists() else None
    return found.group(1) if found else None


def note_port(state_dir: Path, port: int) -> None:
    """Say when the state was made on another port: its queues now have URLs on this one."""
    recorded = recorded_port(state_dir)
    if recorded and recorded != str(port):
        logger.info(
            "this stack's state was made with MINISTACK_PORT=%s: its queues now have URLs on %d", recorded, port
        )


def record_port(state_dir: Path, port: int) -> None:
    """The emulator serves on `port` now: say if its state came from another, and remember this one."""
    note_port(state_dir, port)
    path = state_port_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{port}\n")


def clean_stale_lambda_copies(tmp_dir: Path) -> None:
    """ministack unpacks the bundle for its workers under TMPDIR and leaves it at exit; with the
    emulator stopped, nothing uses those copies."""
    for folder in tmp_dir.glob(f"{MINISTACK_LAMBDA_COPY_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)


def save_state(server: ManagedProcess, marker: Path, timeout_s: float) -> None:
    """ministack saves only on SIGTERM; the launcher saves on SIGUSR1 without stopping. Returns once
    saved (at once when it is not running)."""
    pid = server.pid()
    if pid is None:
        return
    asked = time.time()
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if float(marker.read_text()) >= asked:
                return
        except (OSError, ValueError):
            pass
        if not ManagedProcess.alive(pid):
            raise BackendError(f"ministack exited while saving its state; see {server.log_file}")
        time.sleep(0.1)
    raise BackendError(f"ministack did not save its state within {timeout_s:.0f} s")
