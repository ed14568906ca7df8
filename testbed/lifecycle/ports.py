"""The loopback ports a local stack listens on: defaults, and whether one is free.

Standard library only: `doctor` imports it before any virtual environment exists.
"""

from __future__ import annotations

import socket
import time

from testbed.exceptions import TestbedError

LOOPBACK = "127.0.0.1"


class PortInUseError(TestbedError):
    """A port the stack needs is taken by another program."""


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A port the kernel considers free right now (for tests that run their own stack)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port_free(port: int, timeout_s: float, host: str = LOOPBACK) -> bool:
    """True once nothing accepts on `port`: a killed server's sockets close a moment after it is reaped."""
    deadline = time.monotonic() + timeout_s
    while port_in_use(port, host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for_port(port: int, timeout_s: float, host: str = LOOPBACK) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_in_use(port, host):
            return True
        time.sleep(0.1)
    return False
