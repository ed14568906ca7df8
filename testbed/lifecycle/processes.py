"""Start long-running servers detached, remember them by PID file, stop exactly those."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from testbed.exceptions import TestbedError
from testbed.lifecycle.ports import wait_for_port_free

logger = logging.getLogger(__name__)


class ProcessError(TestbedError):
    """A server cannot be acted on as asked (not running, or an action there is no such thing as)."""


CMDLINE_RETRIES = 50
PRIVATE_UMASK = 0o077


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs process `pid` and its children listen on, to check loopback-only binds.

    Asked of those processes (psutil), which needs no privileges on Linux or macOS.
    """
    found: set[tuple[str, int]] = set()
    try:
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return found
    for process in family:
        with contextlib.suppress(psutil.Error):
            found |= {
                (c.laddr.ip, c.laddr.port)
                for c in process.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            }
    return found


def _under(folder: Path) -> list[psutil.Process]:
    """Live processes of this user whose command line names a path in `folder`, never this process
    or its ancestors."""
    needle = f"{str(folder).rstrip(os.sep)}{os.sep}"
    own = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    uid = os.getuid()
    found = []
    for process in psutil.process_iter(["cmdline", "status", "uids"]):
        with contextlib.suppress(psutil.Error):
            info = process.info
            if process.pid in own or info["status"] == psutil.STATUS_ZOMBIE or info["uids"].real != uid:
                continue
            if needle in " ".join(info["cmdline"] or []):
                found.append(process)
    return found


def processes_under(folder: Path) -> list[int]:
    """PIDs of what a stopped stack left running (a server, a Lambda environment whose code lies in
    the stack's state folder): this user's processes whose command line names a path in `folder`."""
    return [process.pid for process in _under(folder)]


def reap_under(folder: Path, grace_s: float) -> list[int]:
    """End what a stopped stack's servers left behind (their workers name `folder`): SIGTERM, up to
    `grace_s` to exit, then SIGKILL for those still alive. psutil's handles refuse to signal a PID
    that a new process took meanwhile. Returns the PIDs it signalled."""
    left = _under(folder)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(left, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return [process.pid for process in left]


class ManagedProcess:
    """A server this project started: its PID file, log file and the marker in its command line.

    The marker guards against PID reuse: a PID whose command line lacks it is not ours.
    """

    def __init__(self, name: str, run_dir: Path, marker: str) -> None:
        self.name = name
        self.pid_file = run_dir / f"{name}.pid"
        self.log_file = run_dir / f"{name}.log"
        self.settings_file = run_dir / f"{name}.settings.json"
        self.marker = marker

    def pid(self) -> int | None:
        """The PID if the recorded process is still alive and still ours."""
        try:
            pid = int(self.pid_file.read_text().strip())
            process = psutil.Process(pid)
            # A process caught between fork and exec shows an empty command line for a moment.
            for _ in range(CMDLINE_RETRIES):
                cmdline = process.cmdline()
                if cmdline:
                    break
                time.sleep(0.01)
        except (OSError, ValueError, psutil.Error):
            return None
        return pid if self.marker in " ".join(cmdline) else None

    def started_with(self) -> dict[str, Any]:
        """The settings the running process was started with ({} if it runs none recorded)."""
        try:
            settings = json.loads(self.settings_file.read_text())
        except (OSError, ValueError):
            return {}
        return settings if isinstance(settings, dict) else {}

    def start(
        self,
        cmd: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start detached, recording `settings` (ports, modes) so a later start can tell whether the
        running process still matches what is asked for; the caller polls the returned handle."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.settings_file.write_text(json.dumps(dict(settings or {}), sort_keys=True))
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                list(cmd),
                env=dict(env),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # what a server writes (state, secrets, logs) is its owner's alone
                umask=PRIVATE_UMASK,
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
        self.settings_file.unlink(missing_ok=True)
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
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def keep_if_same(server: ManagedProcess, wanted: dict[str, Any], timeout_s: float, port_release_s: float) -> bool:
    """True if `server` runs with `wanted`; a server started with other settings (another port, IAM
    mode) is stopped so it starts again with them, its state kept."""
    pid = server.pid()
    if pid is None:
        return False
    running = server.started_with()
    if running == wanted:
        logger.info("%s already running (pid %d)", server.name, pid)
        return True
    changes = ", ".join(f"{key} {running.get(key, '?')} -> {value}" for key, value in wanted.items())
    logger.info(
        "%s (pid %d) runs with other settings; restarting it (%s; its state is kept)", server.name, pid, changes
    )
    server.stop(timeout_s=timeout_s)
    for port in (value for key, value in running.items() if key.endswith("port") and isinstance(value, int)):
        wait_for_port_free(port, port_release_s)
    return False


def abort_with_stacks(pid: int | None, wait_s: float) -> bool:
    """SIGABRT to a server started under PYTHONFAULTHANDLER, so every thread's stack lands in its log
    (a paused one is resumed to handle it), then SIGKILL after `wait_s`; False if none was running."""
    if pid is None:
        return False
    try:  # a handle, not the bare PID: never signal a process that took the PID meanwhile
        process = psutil.Process(pid)
        with contextlib.suppress(AttributeError, psutil.Error):  # no core file of gigabytes (Linux)
            process.rlimit(psutil.RLIMIT_CORE, (0, 0))
        process.send_signal(signal.SIGABRT)
        process.resume()
        process.wait(timeout=wait_s)
    except psutil.TimeoutExpired:
        process.kill()
    except psutil.Error:
        pass
    return True


def rss_mb(pid: int | None) -> float | None:
    """A running process's resident memory in MB, or None."""
    if pid is None:
        return None
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:  # it exited since
        return None


def hit(
    process: ManagedProcess,
    action: str,
    down_s: float,
    ports: tuple[int, ...],
    stop_timeout_s: float,
    port_release_s: float,
) -> bool:
    """A fault on a server, by its own PID: pause (SIGSTOP for `down_s`, then SIGCONT), kill (SIGKILL,
    its `ports` freed) or restart (a graceful stop), then `down_s` down. True when the caller must
    start it again (kill, restart); a pause is over when this returns False."""
    pid = process.pid()
    if pid is None:
        raise ProcessError(f"{process.name} is not running, so it cannot be hit by a {action}")
    if action == "pause":
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(down_s)
        finally:
            os.kill(pid, signal.SIGCONT)
        return False
    if action == "kill":
        os.kill(pid, signal.SIGKILL)
        while ManagedProcess.alive(pid):
            time.sleep(0.05)
        for port in ports:
            wait_for_port_free(port, port_release_s)
    elif action == "restart":
        process.stop(timeout_s=stop_timeout_s)
    else:
        raise ProcessError(f"unknown fault action {action!r}")
    time.sleep(down_s)
    return True
