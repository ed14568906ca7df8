"""The device signing key and the devices' broker passwords are never written to a file the testbed
leaves behind, except the allow-listed secret files, which only their owner can read: checked after
`up`, after a run, and after `down` (the emulator writes its state only when it stops)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from telemetry.credentials import device_password
from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.secrets import SecretFile, leaked_secrets, unsafe_modes
from testbed.lifecycle.stack import Stack
from testbed.runs.runner import ScenarioRun

pytestmark = pytest.mark.e2e


def secrets_of(stack: Stack) -> dict[str, bytes]:
    """What must never be read from disk: the signing key, the broker's secret and every device's
    password (the bridge's included)."""
    backend = stack.backend
    assert isinstance(backend, EmbeddedBackend)
    found = {"signing key": stack.signing_key(), "broker secret": backend.broker_secret()}
    devices = backend.broker.known_devices()
    assert devices, "the run provisioned no device to check"
    for user in (*devices, "rule-bridge"):
        found[f"password of {user}"] = device_password(backend.broker_secret(), user).encode()
    return found


def check(stack: Stack, secrets: dict[str, bytes], folders: list[Path], allowed: tuple[SecretFile, ...]) -> None:
    leaks = leaked_secrets(folders, secrets, allowed)
    assert not leaks, "\n".join(f"{path}: {what}" for path, what in leaks)
    assert not unsafe_modes(stack.backend.state_dir, allowed)


def test_no_secret_is_left_on_disk_after_up_a_run_and_down(
    stack: Stack, run_scenario: Callable[..., ScenarioRun], tmp_path: Path
) -> None:
    backend = stack.backend
    if not isinstance(backend, EmbeddedBackend):
        pytest.skip("the embedded backend's own files")
    allowed = backend.secret_files()
    result = run_scenario("smoke", duration_s=3, expectations={})
    assert result.passed, result.failures
    folders = [backend.state_dir, tmp_path / "reports"]
    secrets = secrets_of(stack)
    check(stack, secrets, folders, allowed)
    stack.down()
    try:
        check(stack, secrets, folders, allowed)
    finally:
        stack.up()
    check(stack, secrets, folders, allowed)
