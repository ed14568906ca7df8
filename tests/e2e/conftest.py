"""The end-to-end tests' own helpers. The stack, stores and the checks after each test come from the
project's pytest plugin (testbed.pytest_plugin), as in a user's repository; pyproject.toml sets
`testbed_iam = "enforce"`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from processor.config import Settings
from testbed.lifecycle.backends import LocalStackHostBackend
from testbed.lifecycle.stack import Stack

# Short timeouts so a record reported failed is redelivered within seconds (visibility = 6 x timeout).
# a repository of its own, with its own conftest.py: test_plugin.py runs it in a pytest of its own
collect_ignore = ["their_repo"]

TEST_VARIABLES = {"environment_suffix": "e2e", "processor_timeout_seconds": 5, "max_receive_count": 3}


@pytest.fixture(autouse=True)
def every_report_adds_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every run report a test writes in its tmp_path: its counts add up, whatever its verdict (a run
    that lost messages, was interrupted or lost its emulator included)."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    for path in folder.rglob("report.json") if folder is not None else ():
        report = json.loads(path.read_text())
        assert report["sums"] and all(report["sums"].values()), (path, report["sums"], report["counts"])


@pytest.fixture(scope="session")
def testbed_variables() -> dict[str, Any]:
    """The plugin's stack fixture (testbed.pytest_plugin) deploys with these on top of the backend's."""
    return TEST_VARIABLES


@pytest.fixture
def signing_key(stack: Stack) -> bytes:
    """Read for each test: a stack deployed again (LocalStack after a restart) has a key of its own."""
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


# LocalStack 4.14.0 also leaves the function's KMS key out of GetFunction's answer (kms_key_arn)
LOCALSTACK_DRIFT = KNOWN_DRIFT | {"aws_lambda_function.processor"}


def assert_only_known_drift(stack: Stack) -> None:
    """A new plan would change nothing but the emulator's known drift, and that only in place."""
    changes = stack.terraform.changed_resources()
    known = LOCALSTACK_DRIFT if isinstance(stack.backend, LocalStackHostBackend) else KNOWN_DRIFT
    assert set(changes) <= known, changes
    assert all(actions == ["update"] for actions in changes.values()), changes


def needs_iot_core(stack: Stack) -> None:
    """Skip (tests/e2e/skips.py must allow it) where the emulator has no IoT Core."""
    if "iot" not in stack.backend.ingress_modes:
        pytest.skip(f"{stack.backend.emulator()} has no IoT Core: the rule bridge carries the topic rule")


def needs_kept_state(stack: Stack) -> None:
    """Skip (tests/e2e/skips.py must allow it) where a restart of the emulator empties the stack."""
    if not stack.backend.keeps_state:
        pytest.skip(f"{stack.backend.emulator()} keeps no state: a restart empties it (every resource, every item)")


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
