"""The local ingress of the embedded backends: the ingress modes (how devices reach the pipeline),
the Mosquitto binary, and the broker and rule bridge of a stack (LocalBroker, a part of its backend)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ingress.broker import MOSQUITTO_INSTALL, BrokerConfig, find_mosquitto, load_or_create_secret
from testbed.lifecycle.backends.base import BackendError
from testbed.lifecycle.ports import LOOPBACK, wait_for_port
from testbed.lifecycle.processes import ManagedProcess, keep_if_same
from testbed.paths import ROOT

logger = logging.getLogger(__name__)
# how long a local server (the broker, a gate, the emulator) gets to listen after its start
START_TIMEOUT_S = 30.0
# How long a killed server's listening sockets may take to close before its restart is refused.
PORT_RELEASE_S = 10.0


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


class BrokerHost(Protocol):
    """What LocalBroker needs of the backend it is part of."""

    state_dir: Path
    mqtt_port: int
    device_topic: str

    @property
    def run_dir(self) -> Path: ...
    @property
    def mosquitto(self) -> ManagedProcess: ...
    @property
    def bridge(self) -> ManagedProcess: ...
    @property
    def broker(self) -> BrokerConfig: ...
    @property
    def bridge_metrics_file(self) -> Path: ...
    def broker_secret(self) -> bytes: ...
    def ingress_mode(self) -> str: ...
    def endpoint_url(self) -> str: ...
    def client_env(self) -> dict[str, str]: ...
    def check_ingress(self, mode: str) -> None: ...
    def _check_port(self, port: int, what: str) -> None: ...
    def _stop_bridge(self) -> None: ...


class LocalBroker:
    """Mosquitto and the rule bridge of a stack, as a part of its backend: their processes, the
    ingress mode, starting the broker and the bridge for the stack's outputs."""

    @property
    def mosquitto(self: BrokerHost) -> ManagedProcess:
        return ManagedProcess("mosquitto", self.run_dir, marker=str(self.broker.conf))

    @property
    def bridge(self: BrokerHost) -> ManagedProcess:
        return ManagedProcess("bridge", self.run_dir, marker=str(self.run_dir / "outputs.json"))

    @property
    def broker(self: BrokerHost) -> BrokerConfig:
        return BrokerConfig(
            self.state_dir / "broker", self.mqtt_port, self.broker_secret(), device_topic=self.device_topic
        )

    def ingress_mode(self: BrokerHost) -> str:
        """The mode `start_ingress` last started (direct before any)."""
        path = self.run_dir / "ingress-mode"
        return path.read_text() if path.exists() else "direct"

    @property
    def ingress(self: BrokerHost) -> LocalIngress:
        mode = self.ingress_mode()
        if mode not in INGRESS_MODES:
            raise BackendError(
                f"{self.run_dir / 'ingress-mode'} names no ingress mode ({mode[:40]!r}): "
                "`make up INGRESS=...` rewrites it"
            )
        return INGRESS_MODES[mode]

    def _stop_bridge(self: BrokerHost) -> None:
        """Stop the bridge and drop its last counters, so nobody reads a stopped bridge's queue."""
        self.bridge.stop()
        self.bridge_metrics_file.unlink(missing_ok=True)

    @property
    def bridge_metrics_file(self: BrokerHost) -> Path:
        return self.run_dir / "bridge-metrics.json"

    def broker_secret(self: BrokerHost) -> bytes:
        return load_or_create_secret(self.state_dir / "broker-secret")

    def ingress_counters(self: BrokerHost) -> dict[str, float]:
        try:
            return dict(json.loads(self.bridge_metrics_file.read_text()))
        except (OSError, ValueError):  # no bridge (iot mode), or it has not written yet
            return {}

    def _start_mosquitto(self: BrokerHost) -> None:
        wanted = {"port": self.mqtt_port, "device_topic": self.device_topic}
        if keep_if_same(self.mosquitto, wanted, 20.0, PORT_RELEASE_S):
            return
        self._check_port(self.mqtt_port, "mosquitto")
        broker = self.broker
        config = broker.write(broker.known_devices())
        proc = self.mosquitto.start([mosquitto_binary(), "-c", str(config)], os.environ, settings=wanted)
        if not wait_for_port(self.mqtt_port, START_TIMEOUT_S) or proc.poll() is not None:
            raise BackendError(f"mosquitto did not start; see {self.mosquitto.log_file}")

    def start_ingress(self: BrokerHost, outputs_file: Path, mode: str) -> None:
        """Start the rule bridge for this stack (restarted when the outputs or the mode changed)."""
        self.check_ingress(mode)
        target, mode_file = self.run_dir / "outputs.json", self.run_dir / "ingress-mode"
        wanted = (outputs_file.read_text(), mode)
        current = (target.read_text(), mode_file.read_text()) if target.exists() and mode_file.exists() else None
        ingress = INGRESS_MODES[mode]
        if current == wanted and ingress.on_iot_core:
            logger.info("ingress iot: devices publish to the emulator's IoT Core; there is no bridge to start")
            return
        pid = self.bridge.pid()
        # a bridge following another broker port or endpoint (the fault proxy) starts again
        settings = {"broker_port": self.mqtt_port, "endpoint": self.endpoint_url()}
        if current == wanted and pid is not None and self.bridge.started_with() == settings:
            logger.info("rule bridge already running (pid %d)", pid)
            return
        self._stop_bridge()
        target.write_text(wanted[0])
        mode_file.write_text(mode)
        if ingress.bridge_args is None:
            return
        cmd = bridge_command(
            target, self.mqtt_port, self.state_dir / "broker-secret", self.bridge_metrics_file, self.mosquitto.log_file
        )
        cmd += ingress.bridge_args
        proc = self.bridge.start(cmd, {**os.environ, **self.client_env()}, cwd=ROOT, settings=settings)
        time.sleep(0.5)
        if proc.poll() is not None:
            raise BackendError(f"the rule bridge exited at start; see {self.bridge.log_file}")
