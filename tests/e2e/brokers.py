"""A private Mosquitto on a free loopback port, for tests that need a real broker and no stack."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.lifecycle.backends.local_ingress import mosquitto_binary
from testbed.lifecycle.ports import LOOPBACK, free_port, wait_for_port


@contextmanager
def private_mosquitto(directory: Path, *settings: str) -> Iterator[int]:
    """Mosquitto with anonymous access and these extra config lines; yields its port."""
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text("\n".join((f"listener {port} {LOOPBACK}", "allow_anonymous true", *settings)) + "\n")
    proc = subprocess.Popen(
        [mosquitto_binary(), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for_port(port, 10), "mosquitto did not start"
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
