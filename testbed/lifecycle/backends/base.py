"""The backend interface: what every target offers the stack, the tools and the tests."""

from __future__ import annotations

import abc
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import boto3

from ingress.broker import count_refusals
from ingress.quotas.limits import IotQuotas
from simulator.run_config import MqttTarget
from telemetry.topics import DEVICE_TOPIC_TEMPLATE, DeviceTopic, TopicError
from testbed.exceptions import TestbedError
from testbed.lifecycle import iot_things
from testbed.lifecycle.secrets import SecretFile
from testbed.paths import INFRA_DIR
from toolkit.settings import SETTINGS

DEFAULT_REGION = "us-east-1"
# Emulators accept any credentials; these never reach AWS.
EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


class BackendError(TestbedError):
    """A backend cannot start or is not reachable."""


LOCAL_BACKEND_OVERRIDE = 'terraform {\n  backend "local" {}\n}\n'
BACKEND_OVERRIDE_FILE = "backend_override.tf"
# never linked into a copy: Terraform's own working files, which the copy keeps for itself
NOT_LINKED = (".terraform", ".terraform.lock.hcl", BACKEND_OVERRIDE_FILE)


def linked_copy(source: Path, copy: Path, backend_override: str) -> Path:
    """`copy`: a link to each entry of the Terraform folder `source` (files, modules, tfvars) plus a
    backend override; links to anything else (another folder, a removed file) are taken away.
    `path.module` in the copy is the copy: paths outside the folder come in as variables."""
    copy.mkdir(parents=True, exist_ok=True)
    entries = {
        entry.name: entry.resolve()
        for entry in source.iterdir()
        if entry.name not in NOT_LINKED and not entry.name.startswith("terraform.tfstate")
    }
    for link in copy.iterdir():
        if link.is_symlink() and link.resolve() != entries.get(link.name):
            link.unlink()
    for name, entry in entries.items():
        if not (copy / name).is_symlink():
            (copy / name).symlink_to(entry)
    (copy / BACKEND_OVERRIDE_FILE).write_text(backend_override)
    return copy


def device_topic_setting(template: str | None = None) -> str:
    """The devices' topic template: `template`, else TESTBED_DEVICE_TOPIC, else this project's; checked."""
    value = template or SETTINGS["TESTBED_DEVICE_TOPIC"].raw() or DEVICE_TOPIC_TEMPLATE
    try:
        DeviceTopic(value).pattern("x")  # the broker's ACL and the things' policy are made of it
    except TopicError as exc:
        raise BackendError(f"TESTBED_DEVICE_TOPIC: {exc}") from None
    return value


@dataclass(frozen=True)
class Component:
    """One part of a running stack, as `make status` shows it."""

    name: str
    running: bool
    pid: int | None = None
    address: str = ""
    detail: str = ""


# What any backend's state folder may hold that is secret: the local broker's and the devices' credentials.
LOCAL_SECRET_FILES = (
    SecretFile("broker-secret", "the broker's secret, from which each device's password is derived"),
    SecretFile("broker/passwords", "the broker's password file (salted PBKDF2 hashes)"),
    SecretFile("things/*.private.key", "a device's private key"),
    SecretFile("runs/*.key", "a sharded run's key, which seals its shards' summaries"),
)


class Backend(abc.ABC):
    name: str
    state_dir: Path
    region: str = DEFAULT_REGION
    mqtt_port: int
    # Print what would run instead of running it (compose targets; see `DRY_RUN=1`).
    dry_run: bool = False
    # Runs the simulator as a container next to the stack (`make load`).
    simulator_container: ClassVar[bool] = False
    # The local ingress modes `start_ingress` takes; empty when the ingress is fixed (AWS IoT Core).
    ingress_modes: ClassVar[tuple[str, ...]] = ()
    # Runs its servers as processes of this machine, each naming the state folder (`down` ends them all).
    local_processes: ClassVar[bool] = False
    # What it deployed and stored survives a stop or a crash of its emulator (LocalStack's free edition: no).
    keeps_state: ClassVar[bool] = True
    # Each device's topic, `{device_id}` in it: the broker's ACL and the things' policy allow it alone.
    device_topic: str = DEVICE_TOPIC_TEMPLATE

    @property
    def topic(self) -> DeviceTopic:
        """The devices' topic (`device_topic`, the template as set) as the type that builds and reads it."""
        return DeviceTopic(self.device_topic)

    @property
    def iam_enforced(self) -> bool:
        """Whether the backend evaluates IAM policies as AWS does (AWS itself always does)."""
        return False

    def ingress_mode(self) -> str | None:
        """The local ingress mode the running stack uses, where the backend records one."""
        return None

    def components(self) -> list[Component]:
        """What runs for this stack; by default the emulator's endpoint and whether it answers."""
        return [Component("emulator", self.healthy(), address=self.endpoint_url())]

    def log_files(self) -> dict[str, Path]:
        """The log file of each server this backend started on this machine, by source name."""
        return {}

    def check_ingress(self, mode: str) -> None:
        """Refuse an ingress mode this backend lacks, before anything is started for it."""
        if self.ingress_modes and mode not in self.ingress_modes:
            raise BackendError(
                f"INGRESS={mode} is not available on BACKEND={self.name}; choose one of {', '.join(self.ingress_modes)}"
            )

    @classmethod
    @abc.abstractmethod
    def from_env(cls) -> Backend:
        """Configured from environment variables (ports, state folder)."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start what is not running yet; running twice changes nothing."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop exactly what `start` started."""

    @abc.abstractmethod
    def endpoint_url(self) -> str:
        """The AWS API endpoint clients and Terraform use."""

    @abc.abstractmethod
    def healthy(self) -> bool:
        """True when the emulator answers."""

    @abc.abstractmethod
    def start_ingress(self, outputs_file: Path, mode: str) -> None:
        """Start the local ingress (rule bridge) for the deployed stack; running twice changes nothing."""

    @abc.abstractmethod
    def mqtt_target(self) -> MqttTarget:
        """The device-facing MQTT endpoint of the current ingress."""

    @abc.abstractmethod
    def provision_devices(self, device_ids: list[str]) -> None:
        """Give these devices broker credentials (the local twin of creating things)."""

    @abc.abstractmethod
    def release_devices(self, device_ids: list[str]) -> None:
        """Undo `provision_devices` where devices are cloud resources (things); broker passwords stay."""

    def snapshot(self) -> None:
        """Make the emulator keep what it holds now (an emulator that saves only on a graceful stop)."""
        return None

    def verify_delivery(self) -> list[str]:
        """What does not deliver to the processor (an emulator's stalled poller), named; empty when all does."""
        return []

    def fault_targets(self) -> tuple[str, ...]:
        """The parts of the stack `inject_fault` can hit; none where this project does not run them."""
        return ()

    def fault_refusal(self, target: str, action: str) -> str | None:
        """Why this backend cannot inject `action` into `target`, or None when it can (the processor's
        throttle goes through the Lambda API, on any backend)."""
        if target == "processor" or target in self.fault_targets():
            return None
        return f"it can hit: {', '.join(self.fault_targets()) or 'nothing but the processor'}"

    def inject_fault(self, target: str, action: str, down_s: float) -> None:
        """Kill, pause or restart one part of the stack, and bring it back; returns once it is back."""
        why = self.fault_refusal(target, action) or "it does not run the parts as its own processes"
        raise BackendError(
            f"the {self.name} backend does not inject {target} {action}: {why} (run it on the embedded backend)"
        )

    def ingress_counters(self) -> dict[str, float]:
        """The local rule bridge's counters (received, forwarded, queued, mean lag); none where no
        bridge of this project runs or it publishes none."""
        return {}

    def emulator_rss_mb(self) -> float | None:
        """The emulator's resident memory, where it runs as a local process of this project."""
        return None

    def run_simulator(self, fleet: str, duration_s: float, signing_key: str) -> None:
        """The simulator as a container next to the stack (the compose backends)."""
        raise BackendError(f"the {self.name} backend has no simulator container: use `make simulate`")

    def emulator(self) -> str:
        """What serves the AWS APIs, as a report names it (the emulator and its version)."""
        return self.name

    def emulator_pid(self) -> int | None:
        """The emulator's PID where it runs as a process of this project (a run checks it stayed up)."""
        return None

    def abort_emulator(self) -> Path | None:
        """Stop an emulator of this project's that stopped answering, its threads' stacks written to
        its log first (the report a bug needs); the log, or None where the emulator is not ours."""
        return None

    def broker_refusals(self, since_s: float) -> dict[str, int]:
        """What the device-facing broker refused since `since_s` (a packet too large, a wrong
        password), by kind, where this project runs the broker and can read its log."""
        log = self.log_files().get("broker")
        return count_refusals(log, since_s) if log is not None else {}

    def secret_files(self) -> tuple[SecretFile, ...]:
        """The only files under `state_dir` that may hold a secret (each 0600, in 0700 folders)."""
        return LOCAL_SECRET_FILES

    def broker_secret(self) -> bytes:
        """The secret device broker passwords derive from."""
        raise BackendError(f"the {self.name} backend has no local broker credentials")

    def client_env(self) -> dict[str, str]:
        """Environment for boto3, the AWS CLI and Terraform to reach this backend."""
        return {
            **EMULATOR_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint_url(),
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self, service: str) -> Any:
        """A boto3 client for this backend's endpoint (AWS: the default credential chain)."""
        env = self.client_env()
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            region_name=self.region,
        )
        return session.client(service, endpoint_url=env.get("AWS_ENDPOINT_URL"))  # type: ignore[call-overload]

    def register_things(self, device_ids: list[str], folder: Path, policy_name: str) -> Path:
        """Things with their own certificates and the thing-scoped policy, through this backend's IoT API."""
        account = self.client("sts").get_caller_identity()["Account"]
        return iot_things.provision(
            self.client("iot"), device_ids, folder, policy_name, self.region, account, self.device_topic
        )

    def terraform_setup(self, work_dir: Path, infra_dir: Path) -> tuple[Path, list[str] | None]:
        """The folder Terraform runs in for `infra_dir` and its `-backend-config` values (None: local
        state in work_dir). infra/ runs where it is; a stack of the user's own runs in a linked copy
        whose override file makes its state local, whatever backend it names (or none, which would
        put the state in the user's folder, shared by every session)."""
        if infra_dir.resolve() == INFRA_DIR.resolve():
            return infra_dir, None
        return linked_copy(infra_dir, self.state_dir / "infra", LOCAL_BACKEND_OVERRIDE), None

    def fault_proxy_url(self) -> str | None:
        """The API fault proxy every client of the stack goes through, where one runs (API_FAULTS=on)."""
        return None

    def use_api_faults(self, on: bool = True) -> None:
        """Bring the stack up behind the API fault proxy, or without it (Stack.use_api_faults)."""
        if not on:
            return
        raise BackendError(
            f"the {self.name} backend runs no API fault proxy: API faults need `embedded` or `localstack`"
        )

    def use_aws_quotas(self, quotas: IotQuotas | None) -> None:
        """AWS IoT Core's quotas at the local broker (the quota gate), or none."""
        if quotas is None:
            return
        raise BackendError(
            f"the {self.name} backend has no local broker to hold AWS IoT Core's quotas: they need "
            "`embedded` or `localstack` (on AWS, AWS IoT Core enforces its own)"
        )

    def quota_gate(self) -> tuple[Path, IotQuotas] | None:
        """Where a quota gate runs: its ledger of each device's hits, and the quotas it enforces."""
        return None

    def terraform_variables(self, lambda_zip: Path) -> dict[str, Any]:
        variables: dict[str, Any] = {
            "emulator": True,
            "enable_iot_rule": True,
            "region": self.region,
            "lambda_zip_path": str(lambda_zip),
        }
        proxy = self.fault_proxy_url()
        if proxy is not None:  # the processor's own calls go through it too
            variables["functions_endpoint_url"] = proxy
        return variables


def installed_version(venv: Path, distribution: str) -> str | None:
    """The version of `distribution` installed in `venv` (read from its metadata folder's name)."""
    found = sorted(venv.glob(f"lib/python*/site-packages/{distribution}-*.dist-info"))
    return found[-1].name.removesuffix(".dist-info").rsplit("-", 1)[-1] if found else None


def localstack_healthy(endpoint_url: str) -> bool:
    """LocalStack (its image, or the host process) answers its health check with every service up."""
    health = http_json(f"{endpoint_url}/_localstack/health")
    return bool(health) and all(state in ("available", "running") for state in health.get("services", {}).values())


def http_json(url: str, timeout_s: float = 2.0) -> Any:
    """GET a JSON document, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.loads(response.read() or b"null")
    except (urllib.error.URLError, OSError, ValueError):
        return None
