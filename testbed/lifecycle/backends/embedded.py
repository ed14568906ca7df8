"""The Docker-free default: ministack (own venv) and Mosquitto as host processes on loopback."""

from __future__ import annotations

import logging
import os
import signal
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from botocore.exceptions import BotoCoreError, ClientError

from ingress.quotas.limits import IotQuotas
from simulator.run_config import MqttTarget
from simulator.tls import IOT_MQTT_TLS_PORT, DeviceCertificates
from telemetry.credentials import broker_credentials
from telemetry.topics import DEVICE_TOPIC_TEMPLATE
from testbed.lifecycle import iot_things
from testbed.lifecycle.backends.base import (
    LOCAL_SECRET_FILES,
    Backend,
    BackendError,
    Component,
    device_topic_setting,
    http_json,
    installed_version,
)
from testbed.lifecycle.backends.delivery import DELIVERY_CHECK_S, report_queues, stalled_queues
from testbed.lifecycle.backends.gates import Gates, aws_quotas_setting, gate_components
from testbed.lifecycle.backends.local_ingress import INGRESS_MODES, PORT_RELEASE_S, START_TIMEOUT_S, LocalBroker
from testbed.lifecycle.backends.ministack_process import (
    MINISTACK_LAUNCHER,
    clean_stale_lambda_copies,
    ministack_environment,
    record_port,
    save_state,
)
from testbed.lifecycle.ports import LOOPBACK, PortInUseError, port_in_use
from testbed.lifecycle.processes import ManagedProcess, abort_with_stacks, hit, keep_if_same, reap_under, rss_mb
from testbed.lifecycle.secrets import SecretFile
from testbed.paths import MINISTACK_VENV, STATE_ROOT
from toolkit.settings import EMULATOR_PORT, FAULT_PROXY_PORT, MQTT_PORT, QUOTA_GATE_PORT, SETTINGS

logger = logging.getLogger(__name__)

PORT_VARIABLES = {
    "ministack": "MINISTACK_PORT",
    "localstack": "LOCALSTACK_PORT",
    "mosquitto": "MQTT_PORT",
    "IoT MQTT over TLS": "IOT_MQTT_PORT",
    "fault proxy": "FAULT_PROXY_PORT",
    "quota gate": "QUOTA_GATE_PORT",
}
DEVICE_POLICY = "testbed-device-policy"
IAM_MODES = ("off", "enforce")
MINISTACK_SAVE_TIMEOUT_S = 300.0
# how long what the emulator left behind gets to exit after SIGTERM (then SIGKILL)
REAP_GRACE_S = 5.0
# An emulator aborted for its stacks (it stopped answering) gets this long to write them and exit.
ABORT_WAIT_S = 10.0
SECRET_FILES = (
    *LOCAL_SECRET_FILES,
    SecretFile("ministack/state/secretsmanager.json", "the emulator's Secrets Manager, saved when it stops"),
)


@dataclass
class EmbeddedBackend(LocalBroker, Gates, Backend):
    ministack_port: int = EMULATOR_PORT
    mqtt_port: int = MQTT_PORT
    iot_mqtt_port: int = IOT_MQTT_TLS_PORT
    state_dir: Path = STATE_ROOT / "embedded"
    name: str = "embedded"
    # "enforce": the emulator evaluates IAM policies (ministack's AUTH=true): the processor, the
    # topic rule and Firehose act under their own roles; the testbed's own calls are the account root.
    iam: str = "off"
    device_topic: str = DEVICE_TOPIC_TEMPLATE
    # every AWS client of the stack through the API fault proxy (fault_proxy/) on this port
    api_faults: bool = False
    fault_proxy_port: int = FAULT_PROXY_PORT
    # AWS IoT Core's quotas enforced by the quota gate (ingress/quotas/) on this port, devices' way in
    aws_quotas: IotQuotas | None = None
    quota_gate_port: int = QUOTA_GATE_PORT
    ingress_modes: ClassVar[tuple[str, ...]] = tuple(INGRESS_MODES)
    local_processes: ClassVar[bool] = True
    # the emulator's folders under the state folder
    emulator_folders: ClassVar[tuple[str, ...]] = ("ministack/state", "ministack/s3")
    # SIGTERM lets ministack write its state (PERSIST_STATE saves on SIGTERM only); after a long run
    # that is gigabytes of JSON, so it gets minutes, not seconds
    emulator_stop_timeout_s: ClassVar[float] = MINISTACK_SAVE_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.iam not in IAM_MODES:
            raise BackendError(f"IAM={self.iam} is not a mode; choose one of {', '.join(IAM_MODES)}")
        self.device_topic = device_topic_setting(self.device_topic)

    @classmethod
    def from_env(cls) -> EmbeddedBackend:
        return cls(
            ministack_port=SETTINGS["MINISTACK_PORT"].number(),
            mqtt_port=SETTINGS["MQTT_PORT"].number(),
            iot_mqtt_port=SETTINGS["IOT_MQTT_PORT"].number(),
            state_dir=SETTINGS["EMBEDDED_STATE_DIR"].path(STATE_ROOT / "embedded"),
            iam=SETTINGS["IAM"].text(),
            device_topic=device_topic_setting(),
            api_faults=SETTINGS["API_FAULTS"].text() == "on",
            fault_proxy_port=SETTINGS["FAULT_PROXY_PORT"].number(),
            aws_quotas=aws_quotas_setting(),
            quota_gate_port=SETTINGS["QUOTA_GATE_PORT"].number(),
        )

    @property
    def iam_enforced(self) -> bool:
        return self.iam == "enforce"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def ministack(self) -> ManagedProcess:
        return ManagedProcess("ministack", self.run_dir, marker=str(MINISTACK_VENV))

    def mqtt_target(self) -> MqttTarget:
        """Mosquitto with per-device credentials, or (iot) ministack's IoT Core over TLS with X.509, as on AWS."""
        if self.ingress.on_iot_core:
            return MqttTarget(LOOPBACK, self.iot_mqtt_port, tls=DeviceCertificates(self.things_dir, self.iot_ca_file()))
        port = self.mqtt_port if self.aws_quotas is None else self.quota_gate_port
        return MqttTarget(LOOPBACK, port, credentials=broker_credentials(self.broker_secret()))

    @property
    def things_dir(self) -> Path:
        """Certificates of the devices provisioned through the emulator's IoT API."""
        return self.state_dir / "things" / "runs"

    def iot_ca_file(self) -> Path:
        """ministack's Local CA, which signs its broker's certificate (AWS's is Amazon Root CA 1)."""
        path = self.state_dir / "iot-ca.pem"
        if not path.exists():
            with urllib.request.urlopen(f"{self.emulator_url()}/_ministack/iot/ca.pem", timeout=10) as response:
                path.write_bytes(response.read())
        return path

    def emulator(self) -> str:
        return f"ministack {installed_version(MINISTACK_VENV, 'ministack') or '(version unknown)'}"

    def secret_files(self) -> tuple[SecretFile, ...]:
        return SECRET_FILES

    def emulator_url(self) -> str:
        """The emulator itself, past the fault proxy: its health, its CA, the proxy's upstream."""
        return f"http://{LOOPBACK}:{self.ministack_port}"

    def endpoint_url(self) -> str:
        return self.fault_proxy_url() or self.emulator_url()

    def healthy(self) -> bool:
        return http_json(f"{self.emulator_url()}/_ministack/health") is not None

    def start(self) -> None:
        """Start the emulator and the broker; if one cannot start (a busy port), what this call
        started is stopped again, so a failed start leaves the stack as it found it."""
        for path in ("run", "tmp", *self.emulator_folders):
            (self.state_dir / path).mkdir(parents=True, exist_ok=True)
        servers = (self.ministack, self.fault_proxy, self.mosquitto, self.quota_gate_process)
        pids_before = {server.name: server.pid() for server in servers}
        try:
            self._start_fault_proxy()  # first: the emulator's start asks it for the queues' state
            self._start_ministack()
            self._start_mosquitto()
            self._start_quota_gate()
        except BaseException:
            # by PID: a server restarted with other settings (another port) is one this start started
            started = [s for s in servers if s.pid() is not None and s.pid() != pids_before[s.name]]
            for server in reversed(started):
                server.stop(timeout_s=self.emulator_stop_timeout_s)
            if started:
                logger.warning("the start failed: stopped what it had started (%s)", ", ".join(s.name for s in started))
            raise

    def stop(self) -> None:
        """Stop every server of this stack that runs, saying which; stopping a stopped stack says so."""
        if all(server.pid() is None for server in (self.bridge, self.mosquitto, self.ministack)):
            logger.info("nothing of this stack was running (state in %s)", self.state_dir)
        self._stop_bridge()
        self.quota_gate_process.stop()
        self.mosquitto.stop()
        self.fault_proxy.stop()
        if self.ministack.pid() is not None:
            logger.info("stopping the emulator (%s)", self.emulator())
        self.ministack.stop(timeout_s=self.emulator_stop_timeout_s)
        # the emulator's Lambda workers (their code lies in its TMPDIR): a stop must not leave one running
        reaped = reap_under(self.state_dir / "tmp", REAP_GRACE_S)
        if reaped:
            logger.warning("ended %d process(es) the emulator left running: %s", len(reaped), reaped)

    def _check_port(self, port: int, what: str) -> None:
        if port_in_use(port):
            raise PortInUseError(
                f"port {port} on {LOOPBACK} is already in use, so {what} cannot start there; "
                f"stop whatever listens on it or choose another port ({PORT_VARIABLES[what]}=...)"
            )

    def emulator_pid(self) -> int | None:
        return self.ministack.pid()

    def abort_emulator(self) -> Path | None:
        return self.ministack.log_file if abort_with_stacks(self.ministack.pid(), ABORT_WAIT_S) else None

    def emulator_rss_mb(self) -> float | None:
        return rss_mb(self.ministack.pid())

    @property
    def snapshot_marker(self) -> Path:
        """Where the launcher writes when its last snapshot began (see ministack_loopback.py)."""
        return self.run_dir / "ministack-snapshot-at"

    def snapshot(self) -> None:
        save_state(self.ministack, self.snapshot_marker, MINISTACK_SAVE_TIMEOUT_S)

    def log_files(self) -> dict[str, Path]:
        files = {"emulator": self.ministack.log_file, "broker": self.mosquitto.log_file, "bridge": self.bridge.log_file}
        return files | {name: process.log_file for name, (process, _) in self.gates().items()}

    def components(self) -> list[Component]:
        emulator_pid, broker_pid, bridge_pid = self.ministack.pid(), self.mosquitto.pid(), self.bridge.pid()
        rss = self.emulator_rss_mb()
        ingress = INGRESS_MODES.get(self.ingress_mode())  # a corrupt mode file still shows the processes
        on_iot_core = ingress is not None and ingress.on_iot_core
        return [
            Component(
                "emulator",
                emulator_pid is not None,
                emulator_pid,
                f"{LOOPBACK}:{self.ministack_port}",
                f"ministack, IAM {self.iam}" + (f", RSS {rss} MB" if rss is not None else ""),
            ),
            Component(
                "IoT MQTT over TLS",
                emulator_pid is not None,
                emulator_pid,
                f"{LOOPBACK}:{self.iot_mqtt_port}",
                "ministack",
            ),
            Component(
                "broker",
                broker_pid is not None,
                broker_pid,
                f"{LOOPBACK}:{self.mqtt_port}",
                "mosquitto; not used in iot mode" if on_iot_core else "mosquitto",
            ),
            Component(
                "rule bridge",
                bridge_pid is not None,
                bridge_pid,
                "",
                "not used in iot mode (the topic rule runs in the emulator)"
                if on_iot_core
                else f"{self.ingress_mode()} mode",
            ),
            *gate_components(self.gates()),
        ]

    def _start_ministack(self) -> None:
        wanted = {"iam": self.iam, "port": self.ministack_port, "iot_mqtt_port": self.iot_mqtt_port}
        if keep_if_same(self.ministack, wanted, MINISTACK_SAVE_TIMEOUT_S, PORT_RELEASE_S):
            return
        python = MINISTACK_VENV / "bin" / "python"
        if not (MINISTACK_VENV / "bin" / "ministack").exists():
            raise BackendError(f"ministack is not installed in {MINISTACK_VENV} (run `make venvs`)")
        self._check_port(self.ministack_port, "ministack")
        self._check_port(self.iot_mqtt_port, "IoT MQTT over TLS")
        clean_stale_lambda_copies(self.state_dir / "tmp")
        env = ministack_environment(
            self.state_dir, self.ministack_port, self.iot_mqtt_port, self.region, self.iam, self.snapshot_marker
        )
        proc = self.ministack.start([str(python), str(MINISTACK_LAUNCHER)], env, settings=wanted)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.healthy():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise BackendError(f"ministack did not become healthy; see {self.ministack.log_file}")
            time.sleep(0.2)
        record_port(self.state_dir, self.ministack_port)
        report_queues(self.client("lambda"), self.client("sqs"))

    def verify_delivery(self, wait_s: float = DELIVERY_CHECK_S) -> list[str]:
        """A queue feeding the processor that holds waiting messages must see one taken within
        `wait_s`; returns (and logs) each that does not, by name."""
        try:
            problems = stalled_queues(self.client("lambda"), self.client("sqs"), wait_s)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("could not check that the queues deliver: %s", exc)
            return []
        for problem in problems:
            logger.warning("%s: `make down && make up` restarts the emulator and its pollers", problem)
        return problems

    def fault_targets(self) -> tuple[str, ...]:
        """iot mode has no local broker or bridge: devices talk to the emulator itself."""
        return self.ingress.fault_targets

    def inject_fault(self, target: str, action: str, down_s: float) -> None:
        """kill: SIGKILL, `down_s` later a restart; pause: SIGSTOP for `down_s`; restart: SIGTERM (the
        emulator saves its state), `down_s`, start. Only the server's own PID is signalled."""
        if self.fault_refusal(target, action) is not None:
            super().inject_fault(target, action, down_s)
        processes = {"broker": self.mosquitto, "bridge": self.bridge, "emulator": self.ministack}
        if processes[target].pid() is None:
            raise BackendError(f"the {target} is not running, so it cannot be hit by a {action}")
        ports = {"emulator": (self.ministack_port, self.iot_mqtt_port), "broker": (self.mqtt_port,)}.get(target, ())
        if not hit(processes[target], action, down_s, ports, MINISTACK_SAVE_TIMEOUT_S, PORT_RELEASE_S):
            return
        if target == "broker":
            self._start_mosquitto()
        elif target == "bridge":
            self.start_ingress(self.run_dir / "outputs.json", self.ingress_mode())
        else:
            self._start_ministack()

    def release_devices(self, device_ids: list[str]) -> None:
        """iot: delete the run's things and certificates from the emulator's IoT registry; passwords stay."""
        if self.ingress.on_iot_core:
            iot_things.deprovision(self.client("iot"), self.things_dir, device_ids)

    def provision_devices(self, device_ids: list[str]) -> None:
        """iot: things with certificates through the IoT API. Otherwise: broker passwords (Mosquitto reloads)."""
        if self.ingress.on_iot_core:
            self.register_things(device_ids, self.things_dir, DEVICE_POLICY)
            return
        if not self.broker.add_devices(device_ids):
            return
        pid = self.mosquitto.pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
            time.sleep(0.3)
