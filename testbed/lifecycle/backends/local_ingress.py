"""The local ingress of the embedded backends: the ingress modes (how devices reach the pipeline),
the Mosquitto binary, and how the rule bridge is started for a stack."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ingress.broker import MOSQUITTO_INSTALL, find_mosquitto
from testbed.lifecycle.backends.base import BackendError
from testbed.lifecycle.ports import LOOPBACK


@dataclass(frozen=True)
class LocalIngress:
    """How devices reach the pipeline in one ingress mode: which broker they connect to, how they
    get credentials there, and the rule bridge's arguments (None: no bridge, the emulator routes)."""

    mode: str
    bridge_args: tuple[str, ...] | None
    # the parts a fault scenario may hit in this mode
    fault_targets: tuple[str, ...] = ("broker", "bridge", "emulator")

    @property
    def on_iot_core(self) -> bool:
        """Devices publish to the emulator's IoT Core over mTLS, and its topic rule routes."""
        return self.bridge_args is None


# `naive` (one invocation per message) exists for the benchmark.
INGRESS_MODES = {
    ingress.mode: ingress
    for ingress in (
        LocalIngress("direct", ("--mode", "direct")),
        LocalIngress("sqs", ("--mode", "sqs")),
        LocalIngress("naive", ("--mode", "direct", "--batch-size", "1", "--concurrency", "1")),
        LocalIngress("iot", None, fault_targets=("emulator",)),
    )
}


def mosquitto_binary() -> str:
    binary = find_mosquitto()
    if binary is None:
        raise BackendError(f"mosquitto is not installed ({MOSQUITTO_INSTALL})")
    return binary


def bridge_command(
    outputs: Path, broker_port: int, secret_file: Path, metrics_file: Path, broker_log: Path
) -> list[str]:
    """The rule bridge for a stack's outputs, on its broker; the mode's own arguments follow."""
    return [
        sys.executable,
        "-m",
        "ingress",
        "bridge",
        "--outputs",
        str(outputs),
        "--broker",
        f"{LOOPBACK}:{broker_port}",
        "--secret-file",
        str(secret_file),
        "--metrics-file",
        str(metrics_file),
        "--broker-log",
        str(broker_log),
    ]
