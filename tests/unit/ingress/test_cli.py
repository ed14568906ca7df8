"""`python -m ingress`: the compose health check of the rule bridge, and what the bridge refuses to start on."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ingress.__main__ import (
    DEFAULT_MAX_RECEIVE_COUNT,
    HEALTHY_METRICS_AGE_S,
    MAX_BATCH_SIZE,
    MAX_CONCURRENCY,
    MAX_FLUSH_S,
    MAX_RECEIVE_COUNT,
    MAX_VISIBILITY_S,
    aws_config,
    bridge_config,
    build_parser,
    check_health,
    main,
    queue_redelivery,
)
from ingress.broker import BRIDGE_USER
from ingress.delivery import DEFAULT_VISIBILITY_TIMEOUT_S, BridgeConfig
from ingress.rule import parse_rule
from telemetry.credentials import device_password
from telemetry.outputs import StackOutputs


def test_a_bridge_that_wrote_its_counters_lately_is_healthy(tmp_path: Path) -> None:
    metrics = tmp_path / "bridge-metrics.json"
    metrics.write_text('{"received": 1}')
    assert main(["health", "--metrics-file", str(metrics)]) == 0


def test_stale_or_missing_counters_are_unhealthy(tmp_path: Path) -> None:
    metrics = tmp_path / "bridge-metrics.json"
    assert main(["health", "--metrics-file", str(metrics)]) == 1
    metrics.write_text('{"received": 1}')
    old = time.time() - HEALTHY_METRICS_AGE_S - 5
    os.utime(metrics, (old, old))
    assert main(["health", "--metrics-file", str(metrics)]) == 1
    assert main(["health", "--metrics-file", str(metrics), "--max-age", "60"]) == 0


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "No such file"), ("not json", "Expecting value"), ("{}", "stack outputs missing")],
)
def test_the_bridge_refuses_outputs_it_cannot_read_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str | None, problem: str
) -> None:
    outputs = tmp_path / "outputs.json"
    if content is not None:
        outputs.write_text(content)
    secret = tmp_path / "secret"
    assert main(["bridge", "--outputs", str(outputs), "--secret-file", str(secret)]) == 2
    assert f"cannot read the stack's outputs from {outputs}" in caplog.text and problem in caplog.text


OUTPUTS = StackOutputs(
    ingest_queue_url="http://127.0.0.1:4566/000000000000/ingest",
    dlq_url="http://127.0.0.1:4566/000000000000/dlq",
    processor_function_name="processor",
    iot_rule_name="telemetry",
    iot_rule_sql="SELECT * FROM 'sensors/+/telemetry'",
    region="us-east-1",
)


class Queue:
    """get_queue_attributes as SQS answers it, or raising."""

    def __init__(self, attributes: dict[str, str] | Exception) -> None:
        self.attributes = attributes
        self.asked: list[dict[str, Any]] = []

    def get_queue_attributes(self, **kwargs: Any) -> dict[str, Any]:
        self.asked.append(kwargs)
        if isinstance(self.attributes, Exception):
            raise self.attributes
        return {"Attributes": self.attributes}


def test_direct_mode_plays_by_the_queues_own_redelivery_settings() -> None:
    queue = Queue({"VisibilityTimeout": "12", "RedrivePolicy": '{"maxReceiveCount": 7, "deadLetterTargetArn": "x"}'})
    assert queue_redelivery(queue, OUTPUTS.ingest_queue_url) == (12.0, 7)
    assert queue.asked == [
        {"QueueUrl": OUTPUTS.ingest_queue_url, "AttributeNames": ["VisibilityTimeout", "RedrivePolicy"]}
    ]


@pytest.mark.parametrize(
    "attributes",
    [
        {"VisibilityTimeout": "12"},  # no redrive policy
        {"VisibilityTimeout": "12", "RedrivePolicy": "not json"},
        {"RedrivePolicy": '{"maxReceiveCount": 7}'},
        ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "GetQueueAttributes"),
    ],
)
def test_a_queue_whose_settings_cannot_be_read_gets_sqss_defaults_and_a_warning(
    attributes: dict[str, str] | Exception, caplog: pytest.LogCaptureFixture
) -> None:
    assert queue_redelivery(Queue(attributes), "q") == (DEFAULT_VISIBILITY_TIMEOUT_S, DEFAULT_MAX_RECEIVE_COUNT)
    assert (DEFAULT_VISIBILITY_TIMEOUT_S, DEFAULT_MAX_RECEIVE_COUNT) == (30.0, 5)
    assert (
        "could not read the ingest queue's redelivery settings" in caplog.text
        and "30 s and 5 deliveries" in caplog.text
    )


def bridge_args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    secret = tmp_path / "secret"
    secret.write_bytes(b"broker-secret\n")
    return build_parser().parse_args(["bridge", "--outputs", "o.json", "--secret-file", str(secret), *extra])


def test_the_bridge_is_configured_from_its_command_line_and_the_stacks_outputs(tmp_path: Path) -> None:
    rule = parse_rule(OUTPUTS.iot_rule_sql)
    config = bridge_config(bridge_args(tmp_path), OUTPUTS, rule, (12.0, 7))
    assert config == BridgeConfig(
        rule=rule,
        rule_name="telemetry",
        mode="direct",
        host="127.0.0.1",
        port=1883,
        username=BRIDGE_USER,
        password=device_password(b"broker-secret", BRIDGE_USER),
        queue_url=OUTPUTS.ingest_queue_url,
        dlq_url=OUTPUTS.dlq_url,
        function_name="processor",
        batch_size=500,
        flush_interval_s=0.05,
        concurrency=2,
        max_receive_count=7,
        visibility_timeout_s=12.0,
        metrics_file=None,
    )
    given = bridge_args(
        tmp_path,
        *("--mode", "sqs", "--broker", "10.0.0.1:2883", "--batch-size", "10", "--flush-interval", "0"),
        *("--concurrency", "3", "--max-receive-count", "3", "--visibility-timeout", "4", "--metrics-file", "m.json"),
    )
    config = bridge_config(given, OUTPUTS, rule, (12.0, 7))
    assert (config.mode, config.host, config.port, config.batch_size, config.flush_interval_s) == (
        "sqs",
        "10.0.0.1",
        2883,
        10,
        0.0,
    )
    assert (config.concurrency, config.max_receive_count, config.visibility_timeout_s) == (3, 3, 4.0)
    assert config.metrics_file == Path("m.json")
    assert bridge_config(bridge_args(tmp_path, "--broker", ":1999"), OUTPUTS, rule, (1.0, 1)).host == "127.0.0.1"


def test_the_aws_clients_retry_little_and_wait_for_the_longest_invocation() -> None:
    config = aws_config(concurrency=4)  # botocore's Config sets its options as attributes at run time
    settings = {name: getattr(config, name) for name in ("retries", "max_pool_connections", "read_timeout")}
    assert settings == {
        "retries": {"mode": "standard", "max_attempts": 3},
        "max_pool_connections": 8,
        "read_timeout": 120,
    }


def test_the_parser_holds_each_limit_of_aws() -> None:
    parser = build_parser()
    for option, limit in (("--batch-size", MAX_BATCH_SIZE), ("--max-receive-count", MAX_RECEIVE_COUNT)):
        with pytest.raises(SystemExit):
            parser.parse_args(["bridge", "--outputs", "o", "--secret-file", "s", option, str(limit + 1)])
        parsed = parser.parse_args(["bridge", "--outputs", "o", "--secret-file", "s", option, str(limit)])
        assert getattr(parsed, option[2:].replace("-", "_")) == limit
    assert (MAX_BATCH_SIZE, MAX_RECEIVE_COUNT, MAX_VISIBILITY_S, MAX_FLUSH_S, MAX_CONCURRENCY) == (
        10_000,
        1_000,
        43_200.0,
        300.0,
        1_000,
    )
    health = parser.parse_args(["health", "--metrics-file", "m"])
    assert health.max_age == HEALTHY_METRICS_AGE_S == 15.0 and health.func is check_health
