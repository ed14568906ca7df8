"""The process code asks psutil, not Linux's /proc, so `make down` finds and ends its servers on macOS too."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from testbed.lifecycle.ports import LOOPBACK
from testbed.lifecycle.processes import ManagedProcess, listening_sockets, processes_under, reap_under
from testbed.paths import ROOT

LISTENER = """
import socket, sys, time
server = socket.socket()
server.bind((sys.argv[1], 0))
server.listen()
open(sys.argv[2], "w").write(str(server.getsockname()[1]))
time.sleep(60)
"""


def test_no_module_reads_linux_proc_files() -> None:
    readers = []
    for package in ("testbed", "ingress", "simulator", "telemetry"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("/proc"):
                    readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                if isinstance(node, ast.JoinedStr) and any(
                    isinstance(v, ast.Constant) and str(v.value).startswith("/proc") for v in node.values
                ):
                    readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not readers, f"use psutil, which also runs on macOS: {readers}"


def wait_for_file(path: Path) -> str:
    for _ in range(200):
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path.name} was not written")


def listener(tmp_path: Path, marker: str) -> tuple[ManagedProcess, int]:
    process = ManagedProcess("listener", tmp_path, marker=marker)
    port_file = tmp_path / "port"
    process.start([sys.executable, "-c", LISTENER, LOOPBACK, str(port_file), marker], os.environ)
    return process, int(wait_for_file(port_file))


def test_a_killed_server_is_seen_dead_and_reaped(tmp_path: Path) -> None:
    process, _ = listener(tmp_path, f"testbed-unit-dead-{os.getpid()}")
    pid = process.pid()
    assert pid is not None and ManagedProcess.alive(pid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while ManagedProcess.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ManagedProcess.alive(pid), "a killed child is neither alive nor left a zombie"
    assert process.pid() is None
    assert not process.stop()


def test_listening_sockets_names_the_servers_address_and_port(tmp_path: Path) -> None:
    process, port = listener(tmp_path, f"testbed-unit-listen-{os.getpid()}")
    pid = process.pid()
    assert pid is not None
    try:
        assert listening_sockets(pid) == {(LOOPBACK, port)}
    finally:
        assert process.stop(timeout_s=5)
    assert listening_sockets(pid) == set(), "a process that is gone listens on nothing"


def test_listening_sockets_include_a_servers_children(tmp_path: Path) -> None:
    """ministack serves from worker processes too: what a child listens on counts as the server's."""
    marker = f"testbed-unit-parent-{os.getpid()}"
    port_file = tmp_path / "child-port"
    spawn = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {LISTENER!r}, {LOOPBACK!r}, {str(port_file)!r}]); time.sleep(60)"
    )
    parent = ManagedProcess("parent", tmp_path, marker=marker)
    parent.start([sys.executable, "-c", spawn, marker], os.environ)
    pid = parent.pid()
    assert pid is not None
    children = []
    try:
        port = int(wait_for_file(port_file))
        children = psutil.Process(pid).children(recursive=True)
        assert listening_sockets(pid) == {(LOOPBACK, port)}
    finally:
        for process in children:
            process.kill()
        parent.stop(timeout_s=5)


def test_stop_sends_sigterm_first(tmp_path: Path) -> None:
    """Servers save their state on SIGTERM (ministack), so stop must ask before it kills."""
    marker = f"testbed-unit-term-{os.getpid()}"
    ready, done = tmp_path / "ready", tmp_path / "terminated"
    code = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(done)!r}).write_text('saved'), sys.exit(0)))\n"
        f"pathlib.Path({str(ready)!r}).write_text('ready')\n"
        "time.sleep(60)\n"
    )
    process = ManagedProcess("graceful", tmp_path, marker=marker)
    proc = process.start([sys.executable, "-c", code, marker], os.environ)
    wait_for_file(ready)
    assert process.stop(timeout_s=5)
    assert done.read_text() == "saved"
    assert proc.wait(timeout=5) == 0


def test_what_a_stopped_stack_left_is_found_by_its_folder_and_ended(tmp_path: Path) -> None:
    """A worker whose code lies in the folder is found and ended, one that ignores SIGTERM by SIGKILL;
    a process naming a sibling folder (the same prefix) is not the stack's and is left alone."""
    folder = tmp_path / "tmp"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    ours = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(folder / "worker.py")]),
        subprocess.Popen([sys.executable, "-c", stubborn, str(folder / "stubborn.py")]),
    ]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f"{folder}-other/worker.py"])
    try:
        time.sleep(0.5)  # the stubborn one's handler is set
        assert sorted(processes_under(folder)) == sorted(p.pid for p in ours)
        started = time.monotonic()
        assert sorted(reap_under(folder, grace_s=1.0)) == sorted(p.pid for p in ours)
        assert time.monotonic() - started >= 1.0, "the one that ignores SIGTERM got its grace, then SIGKILL"
        assert not any(ManagedProcess.alive(p.pid) for p in ours)
        assert processes_under(folder) == [] and other.poll() is None
    finally:
        for process in (*ours, other):
            process.kill()
            process.wait()
