"""What the pytest plugin's fixtures are made of, importable on their own: a stack for a session,
a device that publishes and waits for its acknowledgement, and the checks run after each test."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulator.run_config import MqttTarget
from telemetry.topics import DEVICE_TOPIC_TEMPLATE, DeviceTopic
from testbed.exceptions import TestbedError
from testbed.lifecycle.backends import (
    BACKENDS,
    Backend,
    ComposeBackend,
    EmbeddedBackend,
    ExternalBackend,
    LocalStackHostBackend,
    backend_class,
    get_backend,
)
from testbed.lifecycle.backends.base import device_topic_setting
from testbed.lifecycle.backends.compose import docker_engine_problem
from testbed.lifecycle.ports import free_port
from testbed.lifecycle.stack import Stack
from testbed.stores import log_events

# the backends a test session may bring up and take down on its own (never AWS)
SESSION_BACKENDS = tuple(name for name in BACKENDS if name != "aws")
PUBLISH_TIMEOUT_S = 10.0
# AWS's wording, with or without the resource (ministack's SNS leaves it out)
DENIED = re.compile(r"not authorized to perform: ?([\w-]+:[\w*]+)(?: on resource: ?(\S+))?")


class SessionStackError(TestbedError):
    """The session's stack cannot be made as asked (the message says why)."""


def session_backend(
    name: str, iam: str, state_dir: Path, endpoint: str, workers: int = 1, device_topic: str = ""
) -> Backend:
    """A backend for one test session: free ports and `state_dir` where the testbed runs the servers;
    the devices' topic template as given (else TESTBED_DEVICE_TOPIC's, else this project's)."""
    topic = device_topic_setting(device_topic)
    if name not in SESSION_BACKENDS:
        raise SessionStackError(f"the stack fixture runs on {', '.join(SESSION_BACKENDS)}, not {name}")
    kind = backend_class(name)
    compose = issubclass(kind, ComposeBackend)
    if compose and workers > 1:
        raise SessionStackError(
            f"BACKEND={name} runs one compose stack on fixed ports, which {workers} xdist workers would each "
            "bring up and take down under the others: run with -n 0"
        )
    if compose:
        reason = docker_engine_problem()
        if reason is not None:  # asked for by name: a run that skips everything must not look like a pass
            raise SessionStackError(f"BACKEND={name} was asked for, but {reason}")
        backend = get_backend(name)
        backend.device_topic = topic
        return backend
    if name == "external":
        return ExternalBackend(endpoint=endpoint, mqtt_port=free_port(), state_dir=state_dir, device_topic=topic)
    if kind is LocalStackHostBackend:
        return LocalStackHostBackend(
            ministack_port=free_port(),
            mqtt_port=free_port(),
            fault_proxy_port=free_port(),
            quota_gate_port=free_port(),
            state_dir=state_dir,
            device_topic=topic,
        )
    return EmbeddedBackend(
        ministack_port=free_port(),
        mqtt_port=free_port(),
        iot_mqtt_port=free_port(),
        fault_proxy_port=free_port(),
        quota_gate_port=free_port(),
        state_dir=state_dir,
        iam=iam,
        device_topic=topic,
    )


def session_variables(name: str, variables: Mapping[str, Any]) -> dict[str, Any]:
    """Terraform variables of a session's stack. On an emulator somebody else runs, each session (each
    xdist worker) deploys under a suffix of its own, so sessions neither meet nor inherit each other's
    resources (the session destroys its own at the end)."""
    if name != "external":
        return dict(variables)
    return {"environment_suffix": f"pytest-{uuid.uuid4().hex[:8]}", **variables}


@dataclass
class MqttDevice:
    """One provisioned device connected to the stack's device-facing broker."""

    device_id: str
    target: MqttTarget
    # the topic `publish` uses unless told another: `{device_id}` in it is this device's
    topic_template: str = DEVICE_TOPIC_TEMPLATE
    client: mqtt.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv311)
        if self.target.tls is not None:
            self.client.tls_set_context(self.target.tls.context(self.device_id))
        if self.target.credentials is not None:
            self.client.username_pw_set(*self.target.credentials(self.device_id))
        self.client.connect(self.target.host, self.target.port)
        self.client.loop_start()

    def publish(
        self, payload: Mapping[str, Any] | str | bytes, topic: str | None = None, timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> None:
        """Publish at QoS 1 and return once the broker acknowledged it (a mapping is sent as JSON)."""
        body = json.dumps(payload) if isinstance(payload, Mapping) else payload
        info = self.client.publish(topic or DeviceTopic(self.topic_template).for_device(self.device_id), body, qos=1)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise TimeoutError(f"{self.device_id}: no PUBACK within {timeout_s:g} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def new_device_id() -> str:
    return f"device-{uuid.uuid4().hex[:8]}"


def denied_calls(stack: Stack, since_ms: int) -> list[str]:
    """Each call IAM denied the processor since `since_ms`, from its log: the action, and the resource
    where the error names one (ministack's SNS does not)."""
    group = stack.outputs().function_log_group
    found = set()
    for _, _, line in log_events(stack.client("logs"), group, since_ms):
        for match in DENIED.finditer(line):
            action, resource = match[1], match[2]
            found.add(f"{action} on {resource.strip(chr(34))}" if resource else action)
    return sorted(found)


def stack_problems(stack: Stack) -> list[str]:
    """What a test left wrong on a stack whose servers this project runs: a server down, or another
    ingress mode than the session's (empty where the testbed runs no servers)."""
    backend = stack.backend
    if not isinstance(backend, EmbeddedBackend):
        return []
    problems = [
        f"{part.name} not running"
        for part in backend.components()
        if not part.running and not (part.name == "rule bridge" and backend.ingress.on_iot_core)
    ]
    if backend.ingress_mode() != stack.ingress:
        problems.append(f"ingress {backend.ingress_mode()} instead of {stack.ingress}")
    return problems
