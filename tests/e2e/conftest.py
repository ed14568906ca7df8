"""An embedded stack of its own for the end-to-end tests: free ports, a temporary state folder."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from processor.config import Settings
from testbed.lifecycle.backends import EmbeddedBackend, get_backend
from testbed.lifecycle.backends.compose import docker_engine_problem
from testbed.lifecycle.ports import free_port
from testbed.lifecycle.stack import Stack
from testbed.runs.stores import Stores, log_events

# Short timeouts so a record reported failed is redelivered within seconds (visibility = 6 x timeout).
TEST_VARIABLES = {"environment_suffix": "e2e", "processor_timeout_seconds": 5, "max_receive_count": 3}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The embedded backend on free ports, or (BACKEND=localstack|ministack-docker) that compose stack."""
    name = os.environ.get("BACKEND", "embedded")
    if name != "embedded":
        if name not in ("localstack", "ministack-docker"):
            pytest.fail(f"the end-to-end tests run on BACKEND=embedded, localstack or ministack-docker, not {name}")
        reason = docker_engine_problem()
        if reason is not None:
            # asked for by name: a run that skips everything must not look like one that passed
            pytest.fail(f"BACKEND={name} was asked for, but {reason}", pytrace=False)
        compose = Stack(get_backend(name), variables=TEST_VARIABLES)
        try:
            compose.up()
            yield compose
        finally:
            compose.down()
        return
    state_dir: Path = tmp_path_factory.mktemp("embedded")
    # IAM enforced: the processor, the topic rule and Firehose act under the roles infra/ gives them
    backend = EmbeddedBackend(
        ministack_port=free_port(),
        mqtt_port=free_port(),
        iot_mqtt_port=free_port(),
        state_dir=state_dir,
        iam="enforce",
    )
    stack = Stack(backend, variables=TEST_VARIABLES)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


# AWS's wording, with or without the resource (ministack's SNS leaves it out)
QUOTE = '"'
DENIED = re.compile(r"not authorized to perform: ?([\w-]+:[\w*]+)(?: on resource: ?(\S+))?")


def denied_calls(stack: Stack, since_ms: int) -> list[str]:
    """Each call IAM denied the processor since `since_ms`, from its log: the action, and the resource
    where the error names one (ministack's SNS does not)."""
    group = stack.outputs().processor_log_group_name
    lines = [message for _, _, message in log_events(stack.client("logs"), group, since_ms)]
    return sorted({_denial(m) for line in lines for m in DENIED.finditer(line)})


def _denial(match: re.Match[str]) -> str:
    action, resource = match[1], match[2]
    return f"{action} on {resource.strip(QUOTE)}" if resource else action


@pytest.fixture(autouse=True)
def no_access_denied(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test on the stack fails when IAM denied the processor anything meanwhile, naming the
    action and the resource (a test waiting for a reading would otherwise only time out). A test
    that takes a permission away on purpose says so with the `iam_denial` marker."""
    if "stack" not in request.fixturenames or request.node.get_closest_marker("iam_denial"):
        yield
        return
    stack: Stack = request.getfixturevalue("stack")
    since_ms = now_ms() - 1000
    yield
    try:
        denied = denied_calls(stack, since_ms)
    except (BotoCoreError, ClientError, OSError, ValueError):  # the stack is down (a fault test): nothing to read
        return
    if denied:
        pytest.fail(f"IAM denied the processor: {'; '.join(denied)}", pytrace=False)


@pytest.fixture(autouse=True)
def stack_left_whole(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that leaves the shared stack with a server down or in another ingress mode fails by
    name, and the stack is brought up again: no later test inherits it, whatever the order."""
    yield
    if "stack" not in request.fixturenames:
        return
    stack: Stack = request.getfixturevalue("stack")
    backend = stack.backend
    if not isinstance(backend, EmbeddedBackend):
        return
    problems = [
        f"{part.name} not running"
        for part in backend.components()
        if not part.running and not (part.name == "rule bridge" and backend.ingress.on_iot_core)
    ]
    if backend.ingress_mode() != stack.ingress:
        problems.append(f"ingress {backend.ingress_mode()} instead of {stack.ingress}")
    if problems:
        stack.up()
        pytest.fail(f"the test left the shared stack with {'; '.join(problems)} (it was brought up again)")


@pytest.fixture(scope="session")
def stores(stack: Stack) -> Stores:
    return Stores.connect(stack.outputs(), stack.client)


@pytest.fixture(scope="session")
def signing_key(stack: Stack) -> bytes:
    return stack.signing_key()


@pytest.fixture(scope="session")
def deployed_settings(stack: Stack) -> Settings:
    """The processor's settings exactly as deployed (read back from the function's environment)."""
    config = stack.client("lambda").get_function_configuration(FunctionName=stack.outputs().processor_function_name)
    return Settings.from_env(config["Environment"]["Variables"])


# ministack answers DescribeAlarms to the provider without these alarms' settings (README)
KNOWN_DRIFT = frozenset(
    {
        "aws_cloudwatch_metric_alarm.dlq_depth",
        "aws_cloudwatch_metric_alarm.ingest_age",
        "aws_cloudwatch_metric_alarm.processor_errors",
    }
)


def assert_only_known_drift(stack: Stack) -> None:
    """A new plan would change nothing but the emulator's known drift, and that only in place."""
    changes = stack.terraform.changed_resources()
    assert set(changes) <= KNOWN_DRIFT, changes
    assert all(actions == ["update"] for actions in changes.values()), changes


def send(stack: Stack, bodies: list[str]) -> None:
    """Put records on the ingest queue, 10 per SendMessageBatch."""
    sqs = stack.client("sqs")
    url = stack.outputs().ingest_queue_url
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
        )
        assert not response.get("Failed"), response["Failed"]


def as_json(message: dict[str, Any]) -> str:
    return json.dumps(message)


def now_ms() -> int:
    return int(time.time() * 1000)
