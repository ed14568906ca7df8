"""Start long-running servers detached, remember them by PID file, stop exactly those."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from testbed.exceptions import TestbedError

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CMDLINE_RETRIES = 50


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


def wait_for_port(port: int, timeout_s: float, host: str = LOOPBACK) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_in_use(port, host):
            return True
        time.sleep(0.1)
    return False


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on `port` (Linux /proc), to check loopback-only binds."""
    found: set[str] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    # the kernel prints each 32-bit word in host (little-endian) order
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                    found.add(socket.inet_ntop(family, words))
    return found


class ManagedProcess:
    """A server this project started: its PID file, log file and the marker in its command line.

    The marker guards against PID reuse: a PID whose command line lacks it is not ours.
    """

    def __init__(self, name: str, run_dir: Path, marker: str) -> None:
        self.name = name
        self.pid_file = run_dir / f"{name}.pid"
        self.log_file = run_dir / f"{name}.log"
        self.marker = marker

    def pid(self) -> int | None:
        """The PID if the recorded process is still alive and still ours."""
        try:
            pid = int(self.pid_file.read_text().strip())
            # A process caught between fork and exec shows an empty command line for a moment.
            for _ in range(CMDLINE_RETRIES):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if cmdline:
                    break
                time.sleep(0.01)
        except (OSError, ValueError):
            return None
        return pid if self.marker in cmdline.replace(b"\0", b" ").decode(errors="replace") else None

    def start(self, cmd: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start detached; the caller polls the returned handle while it waits for readiness."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                list(cmd),
                env=dict(env),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        logger.info("started %s (pid %d), log %s", self.name, proc.pid, self.log_file)
        return proc

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM (servers save state on it), then SIGKILL after the timeout. True if it ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.alive(pid):
            time.sleep(0.1)
        if self.alive(pid):
            logger.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", self.name, pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        logger.info("stopped %s (pid %d)", self.name, pid)
        return True

    @staticmethod
    def alive(pid: int) -> bool:
        """True while the process runs; a dead child of ours is reaped, so it does not linger as a zombie."""
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        stat = Path(f"/proc/{pid}/stat")
        with contextlib.suppress(OSError):
            return stat.read_text().split(") ", 1)[1][0] != "Z"
        return False
