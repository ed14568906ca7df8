"""LocalStack's community edition as a host process, no Docker: `BACKEND=localstack` where no Docker
engine answers (or with LOCALSTACK_RUNNER=host).

localstack-core 4.14.0 (the last release that needs no account) runs from its own venv on Python
3.13, listening on 127.0.0.1 only, its state and temporary files under the stack's state folder
(LocalStack empties its temporary folder at start: never a shared /tmp). Two of its services get
providers of ours (localstack_plugins.py): DynamoDB from moto, and Lambda as a local process per
execution environment on the runtime's own Python. IoT Core is not in the free edition: Mosquitto and
the rule bridge carry the topic rule, as on the embedded backend, whose broker and bridge this one
shares. The free edition keeps no state: a stop or a crash empties it, and `up` deploys again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from testbed.lifecycle.backends.base import (
    BackendError,
    Component,
    device_topic_setting,
    installed_version,
    localstack_healthy,
)
from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.backends.gates import aws_quotas_setting
from testbed.lifecycle.backends.local_ingress import INGRESS_MODES, PORT_RELEASE_S
from testbed.lifecycle.ports import LOOPBACK
from testbed.lifecycle.processes import ManagedProcess, keep_if_same
from testbed.paths import STATE_ROOT, WORK_ROOT
from toolkit.settings import SETTINGS

LOCALSTACK_VENV = SETTINGS["LOCALSTACK_VENV"].path(WORK_ROOT / ".venv-localstack")
LAMBDA_VENV = SETTINGS["LAMBDA_PYTHON_VENV"].path(WORK_ROOT / ".venv-lambda-python3.12")
# LocalStack takes about 20 s to say Ready here; its shutdown can hang on a call in flight.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


@dataclass
class LocalStackHostBackend(EmbeddedBackend):
    state_dir: Path = STATE_ROOT / "localstack-host"
    name: str = "localstack"
    # no IoT Core in LocalStack's free edition: the rule bridge carries the rule
    ingress_modes: ClassVar[tuple[str, ...]] = tuple(mode for mode, i in INGRESS_MODES.items() if not i.on_iot_core)
    emulator_folders: ClassVar[tuple[str, ...]] = ("localstack",)
    keeps_state: ClassVar[bool] = False
    # the free edition saves nothing: a bounded wait, then SIGKILL (its shutdown can hang)
    emulator_stop_timeout_s: ClassVar[float] = STOP_TIMEOUT_S

    @classmethod
    def from_env(cls) -> LocalStackHostBackend:
        return cls(
            ministack_port=SETTINGS["LOCALSTACK_PORT"].number(),
            mqtt_port=SETTINGS["MQTT_PORT"].number(),
            state_dir=SETTINGS["LOCALSTACK_STATE_DIR"].path(STATE_ROOT / "localstack-host"),
            device_topic=device_topic_setting(),
            api_faults=SETTINGS["API_FAULTS"].text() == "on",
            fault_proxy_port=SETTINGS["FAULT_PROXY_PORT"].number(),
            aws_quotas=aws_quotas_setting(),
            quota_gate_port=SETTINGS["QUOTA_GATE_PORT"].number(),
        )

    @property
    def ministack(self) -> ManagedProcess:
        """The emulator's process: LocalStack here (the embedded backend's name for it)."""
        return ManagedProcess("localstack", self.run_dir, marker=str(LOCALSTACK_VENV))

    def emulator_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ministack_port}"

    def healthy(self) -> bool:
        return localstack_healthy(self.emulator_url())

    def emulator(self) -> str:
        version = installed_version(LOCALSTACK_VENV, "localstack_core") or "(version unknown)"
        return f"LocalStack {version} (host process, no Docker)"

    def snapshot(self) -> None:
        """LocalStack's free edition keeps no state to save."""

    def iot_ca_file(self) -> Path:
        raise BackendError("LocalStack's free edition has no IoT Core: use INGRESS=direct or sqs")

    def terraform_variables(self, lambda_zip: Path) -> dict[str, Any]:
        return {**super().terraform_variables(lambda_zip), "enable_iot_rule": False}

    def fault_refusal(self, target: str, action: str) -> str | None:
        """A paused LocalStack keeps its state; a killed or restarted one loses every resource."""
        if target == "emulator" and action != "pause":
            return (
                "LocalStack's free edition keeps no state: a kill or restart empties the stack (every resource, "
                "every stored item) until `make up` deploys it again; an emulator pause is kept"
            )
        return super().fault_refusal(target, action)

    def components(self) -> list[Component]:
        pid, rss = self.ministack.pid(), self.emulator_rss_mb()
        emulator = Component(
            "emulator",
            pid is not None,
            pid,
            f"{LOOPBACK}:{self.ministack_port}",
            self.emulator() + (f", RSS {rss} MB" if rss is not None else ""),
        )
        return [emulator, *(c for c in super().components() if c.name in ("broker", "rule bridge", "fault proxy"))]

    def _start_ministack(self) -> None:
        wanted = {"port": self.ministack_port}
        if keep_if_same(self.ministack, wanted, STOP_TIMEOUT_S, PORT_RELEASE_S):
            return
        python = LOCALSTACK_VENV / "bin" / "python"
        if not python.exists():
            raise BackendError(f"LocalStack is not installed in {LOCALSTACK_VENV}: `make venvs BACKEND={self.name}`")
        lambda_python = LAMBDA_VENV / "bin" / "python"
        if not lambda_python.exists():
            raise BackendError(
                f"the Lambda runtime is not installed in {LAMBDA_VENV}: `make venvs BACKEND={self.name}`"
            )
        self._check_port(self.ministack_port, "localstack")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_", "DOCKER_"))},
            "GATEWAY_LISTEN": f"{LOOPBACK}:{self.ministack_port}",
            # the host in the URLs it hands out (queue URLs): loopback, not a name only public DNS knows
            "LOCALSTACK_HOST": f"{LOOPBACK}:{self.ministack_port}",
            "SQS_ENDPOINT_STRATEGY": "off",
            # the default gateway (twisted) also listens on 0.0.0.0
            "GATEWAY_SERVER": "hypercorn",
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(self.state_dir / "localstack"),
            "TMPDIR": str(self.state_dir / "tmp"),
            "DNS_ADDRESS": "0",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "PROVIDER_OVERRIDE_DYNAMODB": "moto",
            "PROVIDER_OVERRIDE_FIREHOSE": "encryption",
            "LAMBDA_RUNTIME_EXECUTOR": "local-process",
            "LAMBDA_PYTHON3_12": str(lambda_python),
            "PYTHONFAULTHANDLER": "1",  # abort_emulator: SIGABRT writes every thread's stack to the log
        }
        proc = self.ministack.start([str(python), "-m", "localstack.runtime.main"], env, settings=wanted)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.healthy():
            if time.monotonic() > deadline or proc.poll() is not None:
                self.ministack.stop(timeout_s=STOP_TIMEOUT_S)
                raise BackendError(f"LocalStack did not become healthy; see {self.ministack.log_file}")
            time.sleep(0.5)
