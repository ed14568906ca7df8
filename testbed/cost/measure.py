"""The traffic a finished run put through the stack, counted from what it did: the simulator's
payload sizes, the bridge's counters, the processor's log lines, the stored items and the archive."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from simulator.summary import RunSummary
from telemetry.outputs import OutputsError, StackOutputs
from testbed.cost.traffic import FIREHOSE_UNIT_BYTES, LOG_EVENT_OVERHEAD_BYTES, Traffic, iot_units
from testbed.runs.reconcile import Reconciliation
from testbed.runs.stores import RAW_PREFIX, Stores, log_events

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
    result: Reconciliation
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


def _mean_item_bytes(stores: Stores, table: str, device_ids: Iterable[str]) -> float:
    sizes = []
    for device_id in list(device_ids)[:ITEM_SAMPLE_DEVICES]:
        page = stores.dynamodb.query(
            TableName=table,
            KeyConditionExpression="device_id = :d",
            ExpressionAttributeValues={":d": {"S": device_id}},
            Limit=ITEM_SAMPLE_PER_DEVICE,
        )
        sizes += [item_bytes(dict(item)) for item in page.get("Items", [])]
    return sum(sizes) / len(sizes) if sizes else 0.0


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


def _archive(stores: Stores, since: float, records_expected: int) -> tuple[float, float]:
    """(Firehose 5 KB units, bytes) of the run's archived records. Where the emulator writes an
    object per record (ministack), the listing's sizes are the records'; else each line is read."""
    listed = [size for _, size, modified in stores.object_listing(RAW_PREFIX) if modified >= since]
    if len(listed) >= records_expected:
        return float(sum(math.ceil(size / FIREHOSE_UNIT_BYTES) for size in listed)), float(sum(listed))
    sizes = [len(line) + 1 for line in stores.archived_lines(since)]
    return float(sum(math.ceil(size / FIREHOSE_UNIT_BYTES) for size in sizes)), float(sum(sizes))


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


def measured_traffic(stack: Any, outputs: StackOutputs, facts: RunFacts) -> Traffic:
    """The run's traffic as AWS would meter it; raises OutputsError where the stack lacks an output it reads."""
    summary, result = facts.summary, facts.result
    stores = Stores.connect(outputs, stack.client)
    seconds = max(float(summary["send_span_s"]), 1.0)
    topic_bytes = (
        len(stack.backend.device_topic.format(device_id=facts.device_ids[0]).encode()) if facts.device_ids else 0
    )
    generated, units = iot_units(summary["payload_sizes"], topic_bytes)
    acked = summary["acked"]
    message_units = units * acked / generated if generated else 0.0
    actions = facts.forwarded if facts.forwarded is not None else acked
    since_ms = int(facts.started * 1000) - 1000
    unmeasured: list[str] = []
    try:
        invocations, records, milliseconds, log_bytes = _invocations(
            stack.client("logs"), outputs.function_log_group, since_ms
        )
    except (BotoCoreError, ClientError) as exc:  # the rest of the bill still stands
        invocations, records, milliseconds, log_bytes = 0, 0, 0.0, 0.0
        unmeasured.append(f"the processor's invocations and log bytes ({exc})")
    function = stack.client("lambda").get_function_configuration(FunctionName=outputs.processor_function_name)
    archive_units, archive_bytes = _archive(stores, facts.started - 5, result.stored)
    buffer_mib, buffer_s = _buffer(stack, outputs.archive_stream_name)
    return Traffic(
        seconds=seconds,
        devices=len(facts.device_ids),
        messages=acked,
        message_units=message_units,
        basic_ingest=facts.basic_ingest,
        actions=actions,
        records_per_invocation=records / invocations if invocations else 0.0,
        ms_per_invocation=milliseconds / invocations if invocations else 0.0,
        memory_mb=int(function.get("MemorySize") or DEFAULT_MEMORY_MB),
        items=result.stored + result.duplicates_dropped,
        item_bytes=_mean_item_bytes(stores, outputs.need("telemetry_table_name"), facts.device_ids),
        alert_writes=facts.alerts,
        archive_units=archive_units,
        archive_bytes=archive_bytes,
        quarantined=facts.quarantined,
        alerts=facts.alerts,
        log_bytes=log_bytes,
        buffer_mib=buffer_mib,
        buffer_s=buffer_s,
        keys=int(bool(outputs.kms_key_arn)),
        secrets=int(bool(outputs.signing_secret_arn)),
        alarms=_alarms(stack, outputs.environment_suffix),
        basis={
            "measured": f"{acked:,} acknowledged messages over {seconds:g} s from {len(facts.device_ids):,} devices "
            f"(their payload sizes), {actions:,} forwarded by the rule, {invocations:,} invocations from the "
            "processor's log lines, the stored items' sizes, the archive's records, the log bytes",
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
