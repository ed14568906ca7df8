"""An emulator the user already runs (LocalStack, ministack, ...) at AWS_ENDPOINT_URL, with the local
MQTT ingress (Mosquitto and the rule bridge) as on the embedded backend.

The testbed deploys infra/ to that emulator and reads its stores, but never starts, stops, snapshots
or signals it: it is somebody else's process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from testbed.lifecycle.backends.base import EMULATOR_CREDENTIALS, BackendError, Component, device_topic_setting
from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.backends.local_ingress import INGRESS_MODES
from testbed.paths import STATE_ROOT
from toolkit.settings import SETTINGS

logger = logging.getLogger(__name__)

# The emulator is the user's: a local ingress with a bridge of ours works with any of them; the iot
# mode needs ministack's own MQTT broker as the embedded backend starts it.
EXTERNAL_INGRESS_MODES = ("direct", "sqs")
HEALTH_TIMEOUT_S = 3.0


@dataclass
class ExternalBackend(EmbeddedBackend):
    endpoint: str = ""
    state_dir: Path = STATE_ROOT / "external"
    name: str = "external"
    ingress_modes: ClassVar[tuple[str, ...]] = EXTERNAL_INGRESS_MODES
    local_processes: ClassVar[bool] = True
    # filled from `endpoint`; the embedded fields for ministack's own ports mean nothing here
    ministack_port: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        url = urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise BackendError(
                f"BACKEND=external talks to the emulator at AWS_ENDPOINT_URL, which must be an http(s) URL "
                f"such as http://127.0.0.1:4566 (it is {self.endpoint!r})"
            )
        self.ministack_port = url.port or (443 if url.scheme == "https" else 80)

    @classmethod
    def from_env(cls) -> ExternalBackend:
        return cls(
            endpoint=SETTINGS["AWS_ENDPOINT_URL"].text(),
            mqtt_port=SETTINGS["MQTT_PORT"].number(),
            state_dir=SETTINGS["EXTERNAL_STATE_DIR"].path(STATE_ROOT / "external"),
            device_topic=device_topic_setting(),
        )

    def terraform_variables(self, lambda_zip: Path) -> dict[str, Any]:
        """The topic rule only where the emulator has IoT Core (LocalStack's free edition has none:
        the local bridge then runs the rule's SQL, as on the compose LocalStack backend)."""
        return {**super().terraform_variables(lambda_zip), "enable_iot_rule": self._has_iot_rules()}

    def _has_iot_rules(self) -> bool:
        try:
            self.client("iot").list_topic_rules(maxResults=1)
        except (BotoCoreError, ClientError):
            return False
        return True

    def endpoint_url(self) -> str:
        return self.endpoint.rstrip("/")

    def healthy(self) -> bool:
        """Any emulator answers STS GetCallerIdentity (the first call Terraform's provider makes)."""
        client = boto3.client(
            "sts",
            endpoint_url=self.endpoint_url(),
            region_name=self.region,
            config=Config(connect_timeout=HEALTH_TIMEOUT_S, read_timeout=HEALTH_TIMEOUT_S, retries={"max_attempts": 1}),
            aws_access_key_id=EMULATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=EMULATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        try:
            client.get_caller_identity()
        except (BotoCoreError, ClientError):
            return False
        return True

    def start(self) -> None:
        for path in ("run", "tmp"):
            (self.state_dir / path).mkdir(parents=True, exist_ok=True)
        if not self.healthy():
            raise BackendError(
                f"no emulator answers at {self.endpoint_url()}: BACKEND=external starts none, so start yours "
                "first (LocalStack, ministack, ...) or point AWS_ENDPOINT_URL at it"
            )
        self._start_mosquitto()

    def stop(self) -> None:
        """The broker and the bridge; the emulator keeps running (it is not ours to stop)."""
        self._stop_bridge()
        self.mosquitto.stop()

    def snapshot(self) -> None:
        return None

    def emulator_rss_mb(self) -> float | None:
        return None

    def log_files(self) -> dict[str, Path]:
        return {"broker": self.mosquitto.log_file, "bridge": self.bridge.log_file}

    def components(self) -> list[Component]:
        emulator = Component("emulator", self.healthy(), address=self.endpoint_url(), detail="external: not ours")
        return [emulator, *(part for part in super().components() if part.name in ("broker", "rule bridge"))]

    def fault_targets(self) -> tuple[str, ...]:
        """The broker and the bridge: a fault aimed at the emulator is refused (it is not ours)."""
        return tuple(target for target in INGRESS_MODES[self.ingress_mode()].fault_targets if target != "emulator")
