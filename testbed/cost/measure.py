"""The traffic a finished run put through the stack, counted from what it did: the simulator's
payload sizes, the bridge's counters, the processor's log lines, the stored items, and the stack's
own settings (the function's memory and batch, the table's TTL, the bucket's lifecycle, the stream's buffer)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from processor.config import Settings
from processor.exceptions import ConfigurationError
from simulator.summary import RunSummary
from telemetry.outputs import OutputsError, StackOutputs
from testbed.cost.traffic import (
    DYNAMODB_WRITE_UNIT_BYTES,
    LOG_EVENT_OVERHEAD_BYTES,
    SQS_BATCH_MAX,
    Traffic,
    iot_units,
)
from testbed.stores import Stores, log_events

logger = logging.getLogger(__name__)

BATCH_LINE = "batch processed"
ITEM_SAMPLE_DEVICES = 5
ITEM_SAMPLE_PER_DEVICE = 20
# what a Lambda function gets unless its configuration says otherwise
DEFAULT_MEMORY_MB = 128
NOT_COUNTED = (
    "the event source mapping's idle polling, CloudWatch custom metrics, data transfer and the "
    "topic rule's error action; Lambda durations are this machine's, not AWS's"
)


@dataclass(frozen=True)
class RunFacts:
    """What the runner knows of a finished run."""

    summary: RunSummary
    stored: int  # distinct readings the run stored
    duplicates_dropped: int  # redeliveries the processor recognised and did not store again
    device_ids: list[str]
    started: float  # epoch s
    basic_ingest: bool
    forwarded: int | None  # the bridge's forwarded messages in the run; None where no bridge ran
    quarantined: int
    alerts: int


def attribute_bytes(value: dict[str, Any]) -> float:
    """The size DynamoDB gives one attribute value (its documented rules, numbers approximated)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return math.ceil(len(str(inner).lstrip("-").replace(".", "")) / 2) + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_bytes(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_bytes(v) + 1 for v in inner)
    return sum(len(str(member).encode()) for member in inner)  # SS, NS, BS


def item_bytes(item: dict[str, Any]) -> float:
    return sum(len(name.encode()) + attribute_bytes(value) for name, value in item.items())


def _item_sizes(stores: Stores, table: str, device_ids: Iterable[str]) -> list[float]:
    """The sizes of a sample of the run's stored items (a few devices' first items)."""
    sizes = []
    for device_id in list(device_ids)[:ITEM_SAMPLE_DEVICES]:
        page = stores.dynamodb.query(
            TableName=table,
            KeyConditionExpression="device_id = :d",
            ExpressionAttributeValues={":d": {"S": device_id}},
            Limit=ITEM_SAMPLE_PER_DEVICE,
        )
        sizes += [item_bytes(dict(item)) for item in page.get("Items", [])]
    return sizes


def _invocations(logs: Any, group: str, since_ms: int) -> tuple[int, int, float, float]:
    """(invocations, records, milliseconds, log bytes) from the processor's log since `since_ms`."""
    invocations = records = 0
    milliseconds = log_bytes = 0.0
    for _, _, message in log_events(logs, group, since_ms):
        log_bytes += len(message.encode()) + LOG_EVENT_OVERHEAD_BYTES
        if BATCH_LINE not in message:
            continue
        try:
            line = json.loads(message)
        except ValueError:
            continue
        if line.get("message") == BATCH_LINE:
            invocations += 1
            records += int(line.get("records", 0))
            milliseconds += float(line.get("duration_ms", 0.0))
    return invocations, records, milliseconds, log_bytes


def _buffer(stack: Any, stream: str | None) -> tuple[float, float]:
    try:
        described = stack.client("firehose").describe_delivery_stream(DeliveryStreamName=stream)
        hints = described["DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"][
            "BufferingHints"
        ]
        return float(hints["SizeInMBs"]), float(hints["IntervalInSeconds"])
    except (BotoCoreError, ClientError, KeyError, IndexError, ValueError, TypeError):
        return 5.0, 60.0


def _alarms(stack: Any, suffix: str | None) -> int:
    try:
        pages = (
            stack.client("cloudwatch")
            .get_paginator("describe_alarms")
            .paginate(AlarmNamePrefix=f"iot-pipeline-{suffix}")
        )
        return sum(len(page.get("MetricAlarms", [])) for page in pages)
    except (BotoCoreError, ClientError):
        return 0


def _esm_batch_size(stack: Any, function: str) -> int:
    try:
        mappings = stack.client("lambda").list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
        return int(mappings[0]["BatchSize"])
    except (BotoCoreError, ClientError, KeyError, IndexError, ValueError):
        return SQS_BATCH_MAX


def _archive_retention_days(stack: Any, bucket: str | None) -> float | None:
    try:
        rules = stack.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        days = [rule["Expiration"]["Days"] for rule in rules if rule.get("Expiration", {}).get("Days")]
        return float(max(days)) if days else None
    except (BotoCoreError, ClientError, KeyError, ValueError, TypeError):
        return None


def measured_traffic(stack: Any, outputs: StackOutputs, facts: RunFacts) -> Traffic:
    """The run's traffic as AWS would meter it; raises OutputsError where the stack lacks an output it reads."""
    summary = facts.summary
    stores = Stores.connect(outputs, stack.client)
    seconds = max(float(summary["send_span_s"]), 1.0)
    first = facts.device_ids[0] if facts.device_ids else ""
    topic_bytes = len(stack.backend.topic.for_device(first).encode())
    generated, units = iot_units(summary["payload_sizes"], topic_bytes)
    # AWS meters every publish it accepts: a duplicate send acknowledged is billed like any other
    acked = sum(len(record["acked"]) for record in summary["per_device"].values())
    message_units = units * acked / generated if generated else 0.0
    # each stored reading's raw line (its payload and a new line) goes to the archive
    line_bytes = sum((int(size) + 1) * n for size, n in summary["payload_sizes"].items())
    archive_bytes = line_bytes * facts.stored / generated if generated else 0.0
    unmeasured: list[str] = []
    if facts.forwarded is not None and facts.forwarded >= 0:
        actions, actions_basis = facts.forwarded, f"{facts.forwarded:,} forwarded by the rule (the bridge's count)"
    else:
        actions, actions_basis = acked, f"{acked:,} actions, one per acknowledged publish (no bridge count to read)"
    since_ms = int(facts.started * 1000) - 1000
    try:
        invocations, records, milliseconds, log_bytes = _invocations(
            stack.client("logs"), outputs.function_log_group, since_ms
        )
    except (BotoCoreError, ClientError) as exc:  # the rest of the bill still stands
        invocations, records, milliseconds, log_bytes = 0, 0, 0.0, 0.0
        unmeasured.append(f"the processor's log ({exc})")
    function = stack.client("lambda").get_function_configuration(FunctionName=outputs.processor_function_name)
    if invocations:
        per_invocation, ms = records / invocations, milliseconds / invocations
    else:  # no `batch processed` line: the batch is the mapping's, the duration unknown
        per_invocation, ms = float(_esm_batch_size(stack, outputs.processor_function_name)), 0.0
        unmeasured.append(
            f"the processor's invocations and durations (no '{BATCH_LINE}' lines in its log: Lambda compute is "
            f"shown as 0, invocations at the mapping's batch of {per_invocation:g})"
        )
    try:
        item_days = float(Settings.from_env(function.get("Environment", {}).get("Variables", {})).telemetry_ttl_days)
    except (ConfigurationError, KeyError, ValueError):  # not this project's processor
        item_days = 30.0
        unmeasured.append("the table's TTL (the function has no TELEMETRY_TTL_DAYS): 30 days assumed")
    archive_days = _archive_retention_days(stack, outputs.archive_bucket_name)
    if archive_days is None:
        unmeasured.append("the archive's retention (no lifecycle expiration read): 90 days assumed")
    buffer_mib, buffer_s = _buffer(stack, outputs.archive_stream_name)
    sizes = _item_sizes(stores, outputs.need("telemetry_table_name"), facts.device_ids)
    return Traffic(
        seconds=seconds,
        devices=len(facts.device_ids),
        messages=acked,
        message_units=message_units,
        basic_ingest=facts.basic_ingest,
        actions=actions,
        records_per_invocation=per_invocation,
        ms_per_invocation=ms,
        memory_mb=int(function.get("MemorySize") or DEFAULT_MEMORY_MB),
        # a duplicate sent again is put again (the writes are unconditional); within a batch it is not
        items=facts.stored + facts.duplicates_dropped,
        item_bytes=sum(sizes) / len(sizes) if sizes else 0.0,
        write_units_per_item=(
            sum(max(1, math.ceil(size / DYNAMODB_WRITE_UNIT_BYTES)) for size in sizes) / len(sizes) if sizes else 1.0
        ),
        alert_writes=facts.alerts,
        archive_bytes=archive_bytes,
        quarantined=facts.quarantined,
        alerts=facts.alerts,
        log_bytes=log_bytes,
        buffer_mib=buffer_mib,
        buffer_s=buffer_s,
        item_retention_days=item_days,
        archive_retention_days=archive_days or 90.0,
        keys=int(bool(outputs.kms_key_arn)),
        secrets=int(bool(outputs.signing_secret_arn)),
        alarms=_alarms(stack, outputs.environment_suffix),
        basis={
            "measured": f"{acked:,} acknowledged publishes over {seconds:g} s from {len(facts.device_ids):,} devices "
            f"(their payload sizes), {actions_basis}, {invocations:,} invocations from the processor's log lines, "
            f"{len(sizes)} stored items' sizes, the log bytes, the table's TTL and the bucket's lifecycle",
            "not counted": NOT_COUNTED,
            **({"not measured": "; ".join(unmeasured)} if unmeasured else {}),
        },
    )


def cost_or_reason(stack: Any, outputs: StackOutputs, facts: RunFacts) -> Traffic | str:
    """The run's traffic, or why it could not be measured (a report still gets written)."""
    try:
        return measured_traffic(stack, outputs, facts)
    except (BotoCoreError, ClientError, OutputsError) as exc:
        logger.warning("the run's cost could not be measured: %s", exc)
        return str(exc)
