"""The optional gates of a local stack, each its own process on 127.0.0.1: the API fault proxy in
front of the emulator (API_FAULTS=on), and the quota gate in front of the broker (AWS_QUOTAS=on),
where AWS IoT Core's quotas act before the broker acknowledges."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ingress.quotas.limits import IotQuotas
from testbed.lifecycle.backends.base import BackendError, Component
from testbed.lifecycle.backends.local_ingress import INGRESS_MODES, PORT_RELEASE_S, START_TIMEOUT_S
from testbed.lifecycle.ports import LOOPBACK, wait_for_port
from testbed.lifecycle.processes import ManagedProcess, keep_if_same
from testbed.paths import ROOT
from toolkit.settings import SETTINGS

KEEP_TIMEOUT_S = 10.0


def start_fault_proxy(
    process: ManagedProcess, port: int, upstream: str, check_port: Callable[[int, str], None]
) -> None:
    """The API fault proxy on `port` in front of the emulator at `upstream` (kept if it runs so)."""
    wanted = {"port": port, "upstream": upstream}
    if keep_if_same(process, wanted, KEEP_TIMEOUT_S, PORT_RELEASE_S):
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
) -> None:
    """The quota gate on `port` in front of the broker (kept if it runs with these quotas)."""
    wanted = {"port": port, "broker_port": broker_port, "quotas": quotas.model_dump()}
    if keep_if_same(process, wanted, KEEP_TIMEOUT_S, PORT_RELEASE_S):
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


class GateHost(Protocol):
    """What Gates needs of the backend it is part of."""

    api_faults: bool
    fault_proxy_port: int
    aws_quotas: IotQuotas | None
    quota_gate_port: int
    mqtt_port: int

    @property
    def run_dir(self) -> Path: ...
    @property
    def fault_proxy(self) -> ManagedProcess: ...
    @property
    def quota_gate_process(self) -> ManagedProcess: ...
    def emulator_url(self) -> str: ...
    def ingress_mode(self) -> str: ...
    def _check_port(self, port: int, what: str) -> None: ...


class Gates:
    """The gates of a local stack, as a part of its backend: whether each is on, its process, and
    starting or stopping it with the stack."""

    @property
    def fault_proxy(self: GateHost) -> ManagedProcess:
        return ManagedProcess("fault-proxy", self.run_dir, marker="fault_proxy")

    @property
    def quota_gate_process(self: GateHost) -> ManagedProcess:
        return ManagedProcess("quota-gate", self.run_dir, marker="ingress gate")

    def fault_proxy_url(self: GateHost) -> str | None:
        return f"http://{LOOPBACK}:{self.fault_proxy_port}" if self.api_faults else None

    def use_api_faults(self: GateHost, on: bool = True) -> None:
        self.api_faults = on

    def use_aws_quotas(self: GateHost, quotas: IotQuotas | None) -> None:
        self.aws_quotas = quotas

    def quota_gate(self: GateHost) -> tuple[Path, IotQuotas] | None:
        return (quota_ledger(self.quota_gate_process), self.aws_quotas) if self.aws_quotas is not None else None

    def gates(self: GateHost) -> dict[str, tuple[ManagedProcess, int]]:
        """The gates that are on: name -> its process and port."""
        on = {"fault proxy": (self.fault_proxy, self.fault_proxy_port)} if self.api_faults else {}
        if self.aws_quotas is not None:
            on["quota gate"] = (self.quota_gate_process, self.quota_gate_port)
        return on

    def _start_fault_proxy(self: GateHost) -> None:
        """The API fault proxy in front of the emulator, or none (stopped) when API faults are off."""
        if not self.api_faults:
            self.fault_proxy.stop()
            return
        start_fault_proxy(self.fault_proxy, self.fault_proxy_port, self.emulator_url(), self._check_port)

    def _start_quota_gate(self: GateHost) -> None:
        """The quota gate in front of Mosquitto, or none (stopped) when AWS_QUOTAS is off."""
        if self.aws_quotas is None:
            self.quota_gate_process.stop()
            return
        ingress = INGRESS_MODES.get(self.ingress_mode())
        if ingress is not None and ingress.on_iot_core:
            raise BackendError(
                "AWS_QUOTAS needs the local broker (INGRESS=direct or sqs): in iot mode devices reach the "
                "emulator's IoT Core, which no gate stands in front of"
            )
        gate, quotas = self.quota_gate_process, self.aws_quotas
        start_quota_gate(gate, self.quota_gate_port, self.mqtt_port, quotas, self._check_port)
