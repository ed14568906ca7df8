"""LocalStack through docker compose, for users with a Docker engine (not available on CI)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.backends.base import Backend, BackendError, MqttTarget, http_json
from testbed.paths import ROOT, STATE_ROOT

logger = logging.getLogger(__name__)

DEFAULT_PORT = 4566
READY_TIMEOUT_S = 180.0


@dataclass
class LocalStackBackend(Backend):
    port: int = DEFAULT_PORT
    mqtt_port: int = 1883
    state_dir: Path = STATE_ROOT / "localstack"
    name: str = "localstack"

    @classmethod
    def from_env(cls) -> LocalStackBackend:
        return cls(
            port=int(os.environ.get("LOCALSTACK_PORT", DEFAULT_PORT)),
            mqtt_port=int(os.environ.get("MQTT_PORT", "1883")),
        )

    def compose(self, *args: str) -> list[str]:
        return ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "localstack", *args]

    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        health = http_json(f"{self.endpoint_url()}/_localstack/health")
        return bool(health) and all(v in ("available", "running") for v in health.get("services", {}).values())

    def start(self) -> None:
        if shutil.which("docker") is None:
            raise BackendError("BACKEND=localstack needs Docker with the compose plugin")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(self.compose("up", "-d", "--wait"), check=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.healthy():
            if time.monotonic() > deadline:
                raise BackendError(f"LocalStack did not report its services ready within {READY_TIMEOUT_S:.0f} s")
            time.sleep(2)

    def stop(self) -> None:
        subprocess.run(self.compose("down", "--volumes"), check=True)

    def start_ingress(self, outputs_file: Path, mode: str) -> None:
        logger.warning(
            "the docker compose ingress (Mosquitto + rule bridge services) is not built yet: the stack is "
            "deployed, messages can be sent to the ingest queue; use the embedded backend for MQTT ingress"
        )

    def mqtt_target(self) -> MqttTarget:
        raise BackendError("the docker compose broker is not built yet")

    def provision_devices(self, device_ids: list[str]) -> None:
        raise BackendError("device credentials for the docker compose broker are not built yet")

    def terraform_variables(self, lambda_zip: Path) -> dict[str, Any]:
        # IoT Core is not part of LocalStack's free edition.
        return {**super().terraform_variables(lambda_zip), "enable_iot_rule": False}
