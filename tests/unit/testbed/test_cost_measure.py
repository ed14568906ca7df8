"""The traffic a finished run measured (testbed/cost/measure.py), read from fakes of the clients it
asks: what it counts, and what it says when a figure cannot be read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from telemetry.outputs import StackOutputs
from telemetry.topics import DEVICE_TOPIC
from testbed.cost.measure import RunFacts, item_bytes, measured_traffic
from testbed.runs.reconcile import reconcile
from tests.unit.testbed.test_reconcile import summary as run_summary

ITEM = {"device_id": {"S": "a"}, "sk": {"S": "0001"}, "readings": {"M": {"t": {"N": "21.5"}}}}


def not_found(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "gone"}}, operation)


@dataclass
class Clients:
    """One fake per service the measurement asks; `log_lines` are the processor's log events."""

    log_lines: list[str] = field(default_factory=list)
    lifecycle_days: int | None = 90

    def __call__(self, service: str) -> Any:
        return getattr(self, service)()

    def logs(self) -> Any:
        events = [{"timestamp": 1, "eventId": str(n), "message": line} for n, line in enumerate(self.log_lines)]
        return SimpleNamespace(filter_log_events=lambda **_: {"events": events})

    def lambda_(self) -> Any:
        return SimpleNamespace(
            get_function_configuration=lambda **_: {"MemorySize": 1024, "Environment": {"Variables": {}}},
            list_event_source_mappings=lambda **_: {"EventSourceMappings": [{"BatchSize": 25}]},
        )

    def dynamodb(self) -> Any:
        return SimpleNamespace(query=lambda **_: {"Items": [ITEM]})

    def s3(self) -> Any:
        def lifecycle(**_: Any) -> dict[str, Any]:
            if self.lifecycle_days is None:
                raise not_found("GetBucketLifecycleConfiguration")
            return {"Rules": [{"Expiration": {"Days": self.lifecycle_days}}]}

        return SimpleNamespace(get_bucket_lifecycle_configuration=lifecycle)

    def firehose(self) -> Any:
        def describe(**_: Any) -> dict[str, Any]:
            raise not_found("DescribeDeliveryStream")

        return SimpleNamespace(describe_delivery_stream=describe)

    def cloudwatch(self) -> Any:
        return SimpleNamespace(get_paginator=lambda _: SimpleNamespace(paginate=lambda **_: [{"MetricAlarms": [1, 2]}]))

    def sqs(self) -> Any:
        return SimpleNamespace()


def stack_of(clients: Clients) -> Any:
    return SimpleNamespace(
        client=lambda service: clients("lambda_" if service == "lambda" else service),
        backend=SimpleNamespace(device_topic=DEVICE_TOPIC.template, topic=DEVICE_TOPIC),
    )


OUTPUTS = StackOutputs(
    ingest_queue_url="q",
    dlq_url="d",
    processor_function_name="fn",
    iot_rule_name="r",
    iot_rule_sql="SELECT * FROM 'sensors/+/telemetry'",
    region="us-east-1",
    telemetry_table_name="t",
    archive_bucket_name="b",
    archive_stream_name="s",
)


def facts(forwarded: int | None) -> RunFacts:
    summary = run_summary({"a": [1, 2, 3, 4]})
    summary["payload_sizes"] = {"300": 4}
    summary["send_span_s"] = 2.0
    result = reconcile(summary, [("a", 1), ("a", 2), ("a", 3), ("a", 4)], [], [])
    return RunFacts(
        summary, result.items_stored, result.duplicates_dropped, ["a"], 0.0, False, forwarded, quarantined=0, alerts=0
    )


def batch_line(records: int, duration_ms: float) -> str:
    return json.dumps({"message": "batch processed", "records": records, "duration_ms": duration_ms})


def test_invocations_durations_and_log_bytes_come_from_the_processors_lines() -> None:
    lines = [batch_line(3, 40.0), batch_line(1, 20.0), "not json: batch processed", "another line"]
    traffic = measured_traffic(stack_of(Clients(lines)), OUTPUTS, facts(forwarded=4))
    assert (traffic.records_per_invocation, traffic.ms_per_invocation) == (2.0, 30.0)
    assert traffic.log_bytes == sum(len(line) + 26 for line in lines)
    assert traffic.memory_mb == 1024 and traffic.alarms == 2 and traffic.actions == 4
    assert traffic.item_bytes == item_bytes(ITEM) and traffic.write_units_per_item == 1
    assert traffic.archive_bytes == 4 * 301, "each stored reading's payload and its new line"
    assert (traffic.buffer_mib, traffic.buffer_s) == (5.0, 60.0), "the stream's buffer could not be read"
    assert "not measured" in traffic.basis and "TTL" in traffic.basis["not measured"]


def test_no_processor_lines_is_said_and_the_mappings_batch_stands_in() -> None:
    traffic = measured_traffic(stack_of(Clients([], lifecycle_days=None)), OUTPUTS, facts(forwarded=None))
    assert traffic.records_per_invocation == 25 and traffic.ms_per_invocation == 0
    assert "no 'batch processed' lines" in traffic.basis["not measured"]
    assert "90 days assumed" in traffic.basis["not measured"]
    assert traffic.actions == 4 and "no bridge count" in traffic.basis["measured"]


@pytest.mark.parametrize("forwarded", [-300_000, None])
def test_a_bridge_count_that_cannot_be_this_runs_falls_back_to_the_acknowledged(forwarded: int | None) -> None:
    traffic = measured_traffic(stack_of(Clients([batch_line(4, 10.0)])), OUTPUTS, facts(forwarded))
    assert traffic.actions == 4 and traffic.invocations == 1
