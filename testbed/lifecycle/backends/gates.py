"""The optional gates of a local stack, each its own process on 127.0.0.1: the API fault proxy in
front of the emulator (API_FAULTS=on), and the quota gate in front of the broker (AWS_QUOTAS=on),
where AWS IoT Core's quotas act before the broker acknowledges."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ingress.quotas.limits import IotQuotas
from testbed.lifecycle.backends.base import BackendError, Component
from testbed.lifecycle.ports import LOOPBACK, wait_for_port
from testbed.lifecycle.processes import ManagedProcess, keep_if_same
from testbed.paths import ROOT
from toolkit.settings import SETTINGS

START_TIMEOUT_S = 30.0
KEEP_TIMEOUT_S = 10.0


def start_fault_proxy(
    process: ManagedProcess, port: int, upstream: str, check_port: Callable[[int, str], None], release_s: float
) -> None:
    """The API fault proxy on `port` in front of the emulator at `upstream` (kept if it runs so)."""
    wanted = {"port": port, "upstream": upstream}
    if keep_if_same(process, wanted, KEEP_TIMEOUT_S, release_s):
        return
    check_port(port, "fault proxy")
    cmd = [sys.executable, "-m", "fault_proxy", "--upstream", upstream, "--port", str(port)]
    proc = process.start(cmd, os.environ, cwd=ROOT, settings=wanted)
    if not wait_for_port(port, START_TIMEOUT_S) or proc.poll() is not None:
        raise BackendError(f"the API fault proxy did not start; see {process.log_file}")


def aws_quotas_setting() -> IotQuotas | None:
    """AWS_QUOTAS=on: AWS IoT Core's default quotas at the local broker (a scenario may change them)."""
    return IotQuotas() if SETTINGS["AWS_QUOTAS"].text() == "on" else None


def quota_flags(quotas: IotQuotas) -> list[str]:
    """`ingress gate`'s flags for these quotas (one per field, named after it)."""
    return [word for name, value in quotas.model_dump().items() for word in ("--" + name.replace("_", "-"), str(value))]


def start_quota_gate(
    process: ManagedProcess,
    port: int,
    broker_port: int,
    quotas: IotQuotas,
    check_port: Callable[[int, str], None],
    release_s: float,
) -> None:
    """The quota gate on `port` in front of the broker (kept if it runs with these quotas)."""
    wanted = {"port": port, "broker_port": broker_port, "quotas": quotas.model_dump()}
    if keep_if_same(process, wanted, KEEP_TIMEOUT_S, release_s):
        return
    check_port(port, "quota gate")
    cmd = [sys.executable, "-m", "ingress", "gate", "--broker", f"{LOOPBACK}:{broker_port}", "--port", str(port)]
    cmd += ["--ledger", str(quota_ledger(process)), *quota_flags(quotas)]
    proc = process.start(cmd, os.environ, cwd=ROOT, settings=wanted)
    if not wait_for_port(port, START_TIMEOUT_S) or proc.poll() is not None:
        raise BackendError(f"the quota gate did not start; see {process.log_file}")


def quota_ledger(process: ManagedProcess) -> Path:
    """The gate's ledger: each client id's quota hits, rewritten once a second."""
    return process.log_file.with_name("quota-ledger.json")


# what each gate is, in `status`
GATE_ROLES = {
    "fault proxy": "LocalStack's Chaos API; every AWS client",
    "quota gate": "AWS IoT Core's quotas; devices connect here",
}


def gate_components(running: dict[str, tuple[ManagedProcess, int]]) -> list[Component]:
    """`status` rows for the gates that are on (name -> its process and port)."""
    rows = []
    for name, (process, port) in running.items():
        pid = process.pid()
        rows.append(Component(name, pid is not None, pid, f"{LOOPBACK}:{port}", GATE_ROLES[name]))
    return rows
