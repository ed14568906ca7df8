"""The real thing: infra/ on AWS with an S3 state backend, IoT Core as the ingress.

No endpoint override anywhere: boto3 and Terraform use the caller's default credential chain.
Terraform runs in a per-environment copy of infra/ (symlinks) that adds `backend_override.tf`
with an S3 backend, so infra/ itself stays unchanged for every target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from simulator.run_config import MqttTarget
from simulator.tls import IOT_MQTT_TLS_PORT, DeviceCertificates
from telemetry.topics import DEVICE_TOPIC_TEMPLATE
from testbed.lifecycle import iot_things
from testbed.lifecycle.backends.base import (
    DEFAULT_REGION,
    Backend,
    BackendError,
    device_topic_setting,
    linked_copy,
)
from testbed.lifecycle.secrets import private_folder
from testbed.paths import STATE_ROOT
from toolkit.settings import SETTINGS

BACKEND_OVERRIDE = 'terraform {\n  backend "s3" {}\n}\n'
# `name = "value"` lines of a Terraform backend config file (the S3 backend's settings are flat).
_SETTING = re.compile(r'^\s*([A-Za-z_]+)\s*=\s*"([^"]*)"\s*$', re.M)


def read_backend_config(path: Path) -> dict[str, str]:
    """The user's S3 backend settings; the file must name at least a bucket and a key."""
    if not path.is_file():
        raise BackendError(
            f"Terraform backend config {path} does not exist; write one with bucket, key, region and "
            "use_lockfile (or dynamodb_table) and pass it as BACKEND_CONFIG=<file>"
        )
    settings = dict(_SETTING.findall(path.read_text()))
    missing = [name for name in ("bucket", "key") if not settings.get(name)]
    if missing:
        raise BackendError(f"Terraform backend config {path} does not set {' and '.join(missing)}")
    return settings


def check_state_bucket(s3: Any, bucket: str, config_file: Path) -> None:
    """Fail before Terraform does, with the bucket's name and what is wrong with it."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise BackendError(
                f"the Terraform state bucket {bucket!r} (from {config_file}) does not exist; create it first"
            ) from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise BackendError(
                f"access to the Terraform state bucket {bucket!r} (from {config_file}) is forbidden "
                "for these credentials"
            ) from None
        raise BackendError(f"the Terraform state bucket {bucket!r} (from {config_file}): {exc}") from None


@dataclass
class AwsBackend(Backend):
    environment: str = "dev"
    region: str = DEFAULT_REGION
    backend_config_file: Path = Path("backend.s3.hcl")
    mqtt_port: int = IOT_MQTT_TLS_PORT
    state_dir: Path = STATE_ROOT / "aws-dev"
    name: str = "aws"
    device_topic: str = DEVICE_TOPIC_TEMPLATE

    @property
    def iam_enforced(self) -> bool:
        return True

    @classmethod
    def from_env(cls) -> AwsBackend:
        environment = SETTINGS["ENV"].text()
        return cls(
            environment=environment,
            backend_config_file=Path(SETTINGS["BACKEND_CONFIG"].text()).resolve(),
            state_dir=STATE_ROOT / f"aws-{environment}",
            region=SETTINGS["AWS_REGION"].raw() or SETTINGS["AWS_DEFAULT_REGION"].text(),
            device_topic=device_topic_setting(),
        )

    def client_env(self) -> dict[str, str]:
        """Only the region: credentials come from the caller's chain, and there is no endpoint override."""
        return {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}

    def endpoint_url(self) -> str:
        return f"https://iot.{self.region}.amazonaws.com"

    def healthy(self) -> bool:
        return True

    def start(self) -> None:
        """Check the credentials and the state bucket before Terraform runs."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.client("sts").get_caller_identity()
        except (NoCredentialsError, ClientError, BotoCoreError) as exc:
            raise BackendError(
                f"TARGET=aws needs AWS credentials (the default chain found none usable: {exc})"
            ) from None
        settings = read_backend_config(self.backend_config_file)
        check_state_bucket(self.client("s3"), settings["bucket"], self.backend_config_file)

    def stop(self) -> None:
        """Nothing runs locally; `destroy` removes what was deployed."""

    def terraform_setup(self, work_dir: Path, infra_dir: Path) -> tuple[Path, list[str] | None]:
        """A linked copy of `infra_dir` with the S3 backend override; the user's settings file."""
        return linked_copy(infra_dir, self.state_dir / "infra", BACKEND_OVERRIDE), [str(self.backend_config_file)]

    def terraform_variables(self, lambda_zip: Path) -> dict[str, Any]:
        return {
            "emulator": False,
            "enable_iot_rule": True,
            "region": self.region,
            "environment_suffix": self.environment,
            "lambda_zip_path": str(lambda_zip),
        }

    def start_ingress(self, outputs_file: Path, mode: str) -> None:
        """IoT Core and the Terraform topic rule are the ingress; nothing to start."""

    @property
    def things_dir(self) -> Path:
        return self.state_dir / "things" / "runs"

    def mqtt_target(self) -> MqttTarget:
        endpoint = self.client("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
        private_folder(self.things_dir)
        # Amazon Root CA 1 signs the ATS endpoint; the system trust store holds it.
        return MqttTarget(endpoint, IOT_MQTT_TLS_PORT, tls=DeviceCertificates(self.things_dir))

    def release_devices(self, device_ids: list[str]) -> None:
        """Delete the run's things and certificates, so runs do not pile up in the account."""
        iot_things.deprovision(self.client("iot"), self.things_dir, device_ids)

    def provision_devices(self, device_ids: list[str]) -> None:
        self.register_things(device_ids, self.things_dir, f"iot-pipeline-{self.environment}-runs-device-policy")
