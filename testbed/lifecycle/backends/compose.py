"""docker compose targets: LocalStack (or ministack's image) plus Mosquitto and the rule bridge as containers.

For users with a Docker engine; these machines have none, so the commands are checked statically
(`--dry-run` prints them instead of running them) and the end-to-end tests skip with the reason.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import docker

from ingress.broker import BrokerConfig, load_or_create_secret
from simulator.run_config import MqttTarget
from telemetry.credentials import broker_credentials
from telemetry.topics import DEVICE_TOPIC_TEMPLATE
from testbed.lifecycle.backends.base import Backend, BackendError, device_topic_setting, http_json, localstack_healthy
from testbed.paths import ROOT, STATE_ROOT
from toolkit.settings import EMULATOR_PORT, MQTT_PORT, SETTINGS

logger = logging.getLogger(__name__)

COMPOSE_FILE = ROOT / "docker-compose.yml"
READY_TIMEOUT_S = 180.0
ENGINE_PING_TIMEOUT_S = 5
# Where the broker's files appear inside the Mosquitto container (see docker-compose.yml).
CONTAINER_BROKER_DIR = PurePosixPath("/mosquitto/config")
INGRESS_MODES = ("direct", "sqs")


def docker_engine_problem() -> str | None:
    """None when a Docker engine answers a ping and compose is installed, else what is wrong and the fix.

    The engine is asked, not the PATH: a docker CLI with no engine behind it (a stopped Docker
    Desktop, a CI runner without the daemon) is the usual case, and names a different fix.
    """
    if shutil.which("docker") is None:
        return "the docker CLI is not installed (https://docs.docker.com/engine/install/); or use BACKEND=embedded"
    try:
        docker.from_env(timeout=ENGINE_PING_TIMEOUT_S).ping()
    except docker.errors.DockerException as exc:
        where = SETTINGS["DOCKER_HOST"].raw() or "the default socket"
        return (
            f"no Docker engine answers at {where} ({exc}): start Docker Desktop or the docker service "
            "(sudo systemctl start docker), or use BACKEND=embedded, which needs no Docker"
        )
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        return "the docker compose plugin is missing (https://docs.docker.com/compose/install/)"
    return None


@dataclass
class ComposeBackend(Backend):
    """One compose profile: `localstack` or `ministack`, each with Mosquitto and the bridge."""

    profile: str = "localstack"
    port: int = EMULATOR_PORT
    mqtt_port: int = MQTT_PORT
    state_dir: Path = STATE_ROOT / "localstack"
    name: str = "localstack"
    # Print the docker commands instead of running them (what `make ... DRY_RUN=1` shows).
    dry_run: bool = False
    device_topic: str = DEVICE_TOPIC_TEMPLATE
    _engine_checked: bool = field(default=False, init=False, repr=False)

    # The variable docker-compose.yml publishes the emulator's port with.
    PORT_VARIABLE: ClassVar[str] = "LOCALSTACK_PORT"
    simulator_container: ClassVar[bool] = True
    ingress_modes: ClassVar[tuple[str, ...]] = INGRESS_MODES

    @classmethod
    def from_env(cls) -> ComposeBackend:
        return cls(
            port=SETTINGS[cls.PORT_VARIABLE].number(),
            mqtt_port=SETTINGS["MQTT_PORT"].number(),
            state_dir=SETTINGS["COMPOSE_STATE_DIR"].path(cls().state_dir),
            dry_run=SETTINGS["DRY_RUN"].flag(),
            device_topic=device_topic_setting(),
        )

    @property
    def emulator_service(self) -> str:
        return self.profile

    def compose(self, *args: str) -> list[str]:
        """A docker compose command; it runs in the checkout, so the file is named relative to it."""
        return ["docker", "compose", "-f", COMPOSE_FILE.name, "--profile", self.profile, *args]

    def compose_env(self) -> dict[str, str]:
        """What docker-compose.yml interpolates: ports, the state folder, the user to run as."""
        return {
            self.PORT_VARIABLE: str(self.port),
            "MQTT_PORT": str(self.mqtt_port),
            "TESTBED_COMPOSE_STATE": str(self.state_dir),
            "TESTBED_UID": str(os.getuid()),
            "TESTBED_GID": str(os.getgid()),
            "AWS_REGION": self.region,
        }

    def _run(self, cmd: list[str], extra_env: dict[str, str] | None = None) -> None:
        if self.dry_run:
            print(shlex.join(cmd))
            return
        if not self._engine_checked:
            problem = docker_engine_problem()
            if problem is not None:
                raise BackendError(f"BACKEND={self.name} needs a running Docker engine: {problem}")
            self._engine_checked = True
        env = {**os.environ, **self.compose_env(), **(extra_env or {})}
        if subprocess.run(cmd, env=env, cwd=ROOT).returncode != 0:
            raise BackendError(f"`{shlex.join(cmd)}` failed")

    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        return localstack_healthy(self.endpoint_url())

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "run").mkdir(exist_ok=True)
        self._run(self.compose("up", "-d", "--wait", self.emulator_service))
        if self.dry_run:
            return
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.healthy():
            if time.monotonic() > deadline:
                raise BackendError(f"{self.name} did not report its services ready within {READY_TIMEOUT_S:.0f} s")
            time.sleep(2)

    def stop(self) -> None:
        """Remove the containers and the volumes this profile created."""
        self._run(self.compose("--profile", "simulator", "down", "--volumes", "--remove-orphans"))

    @property
    def broker(self) -> BrokerConfig:
        return BrokerConfig(
            self.state_dir / "broker",
            1883,
            self.broker_secret(),
            container_dir=CONTAINER_BROKER_DIR,
            device_topic=self.device_topic,
        )

    def broker_secret(self) -> bytes:
        return load_or_create_secret(self.state_dir / "broker-secret")

    def start_ingress(self, outputs_file: Path, mode: str) -> None:
        """Mosquitto and the rule bridge as compose services (built from the project's Dockerfile)."""
        self.check_ingress(mode)
        broker = self.broker
        acl_before = broker.acl.read_text() if broker.acl.exists() else None
        broker.write(broker.known_devices())
        self._run(self.compose("up", "-d", "--wait", "--build", "mosquitto", "bridge"), {"INGRESS": mode})
        if acl_before is not None and acl_before != broker.acl.read_text():  # another device topic
            self._run(self.compose("kill", "-s", "SIGHUP", "mosquitto"))

    def mqtt_target(self) -> MqttTarget:
        return MqttTarget("127.0.0.1", self.mqtt_port, credentials=broker_credentials(self.broker_secret()))

    def provision_devices(self, device_ids: list[str]) -> None:
        """Add the devices to the password file; Mosquitto reloads it on SIGHUP."""
        if not self.broker.add_devices(device_ids):
            return
        self._run(self.compose("kill", "-s", "SIGHUP", "mosquitto"))
        if not self.dry_run:
            time.sleep(0.5)

    def release_devices(self, device_ids: list[str]) -> None:
        """Broker passwords are cheap and runs may share devices: they stay until `make down`."""

    def run_simulator(self, fleet: str, duration_s: float, signing_key: str) -> None:
        """The simulator as a one-off container on the compose network (profile `simulator`)."""
        self._run(
            self.compose("--profile", "simulator", "run", "--rm", "--build", "simulator"),
            # passed by name: compose reads the value from this environment, it is never on a command line
            {"FLEET": fleet, "DURATION": f"{duration_s:g}", "SIMULATOR_SIGNING_KEY": signing_key},
        )

    def terraform_variables(self, lambda_zip: Path) -> dict[str, Any]:
        variables = super().terraform_variables(lambda_zip)
        if self.profile == "localstack":
            # IoT Core is not part of LocalStack's free edition; the rule bridge evaluates the rule.
            variables["enable_iot_rule"] = False
        return variables


@dataclass
class LocalStackBackend(ComposeBackend):
    """`BACKEND=localstack` where a Docker engine answers (or with LOCALSTACK_RUNNER=docker)."""

    keeps_state: ClassVar[bool] = False


@dataclass
class MinistackDockerBackend(ComposeBackend):
    """`BACKEND=ministack-docker`: ministack's own image, for containers without a LocalStack account."""

    PORT_VARIABLE: ClassVar[str] = "MINISTACK_PORT"
    profile: str = "ministack"
    state_dir: Path = STATE_ROOT / "ministack-docker"
    name: str = "ministack-docker"

    def healthy(self) -> bool:
        return http_json(f"{self.endpoint_url()}/_ministack/health") is not None
