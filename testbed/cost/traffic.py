"""The traffic a bill prices: what a run measured or what a plan describes, over a period, and the
AWS metering rules that turn it into billed quantities."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# AWS's metering units
IOT_UNIT_BYTES = 5 * 1024  # IoT Core messages and rules triggered: payload and topic, per 5 KB
FIREHOSE_UNIT_BYTES = 5 * 1024  # Firehose ingestion: each record rounded up to 5 KB
DYNAMODB_WRITE_UNIT_BYTES = 1024  # an on-demand write request unit writes up to 1 KB
LOG_EVENT_OVERHEAD_BYTES = 26  # CloudWatch Logs bills each event's message plus 26 bytes
GB = 1024**3
MIB = 1024**2
MONTH_S = 30 * 86_400
SQS_BATCH_MAX = 10  # messages per ReceiveMessage and per DeleteMessageBatch
# KMS: SNS asks for a data key per publish to an encrypted topic; the tables, the archive bucket (a
# bucket key), the delivery stream and the log group reuse theirs for about five minutes.
KMS_DATA_KEY_REUSE_S = 300
KMS_CACHING_RESOURCES = 5


@dataclass(frozen=True)
class Traffic:
    """What went through the pipeline in `seconds`, counted the way AWS meters it."""

    seconds: float
    devices: int
    messages: int  # publishes IoT Core accepted (acknowledged)
    message_units: float  # their 5 KB units (payload and topic)
    basic_ingest: bool  # published to the rule's $aws/rules topic: no messaging charge
    actions: int  # rule actions executed: messages the rule's WHERE let through to the queue
    records_per_invocation: float
    ms_per_invocation: float
    memory_mb: int
    items: int  # DynamoDB items written: each stored reading, and each duplicate written again
    item_bytes: float  # their mean size
    write_units_per_item: float  # their mean write request units (each item rounded up to 1 KB)
    alert_writes: int
    archive_bytes: float  # the archived lines: each invocation packs its readings' into one record
    quarantined: int  # S3 PUTs of the quarantine, one object each
    alerts: int  # SNS publishes
    log_bytes: float
    buffer_mib: float = 5.0  # the delivery stream's buffer: an S3 object per flush
    buffer_s: float = 60.0
    item_retention_days: float = 30.0  # the table's TTL: a steady month holds this many days of items
    archive_retention_days: float = 90.0  # the bucket's lifecycle expiration
    keys: int = 1
    secrets: int = 1
    alarms: int = 3
    # where each figure came from, shown beside the bill ("measured: ...", "assumed: ...")
    basis: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def invocations(self) -> float:
        return self.actions / self.records_per_invocation if self.records_per_invocation else 0.0

    @property
    def archive_units(self) -> float:
        """Firehose's 5 KB units: a record per invocation, its lines packed together."""
        if not self.invocations:
            return 0.0
        return self.invocations * math.ceil(self.archive_bytes / self.invocations / FIREHOSE_UNIT_BYTES)

    def per_month(self) -> Traffic:
        """The same rates sustained for 30 days (the fleet stays connected all month)."""
        factor = MONTH_S / self.seconds if self.seconds else 0.0
        counted = (
            *("messages", "message_units", "actions", "items", "alert_writes"),
            *("archive_bytes", "quarantined", "alerts", "log_bytes"),
        )
        scaled: dict[str, Any] = {name: getattr(self, name) * factor for name in counted}
        return dataclasses.replace(self, seconds=MONTH_S, **scaled)

    def with_changes(self, **changes: Any) -> Traffic:
        return dataclasses.replace(self, **changes)

    def quantities(self) -> dict[str, tuple[float, str]]:
        """Price item -> (billed quantity in the price's unit, how it was counted)."""
        months = self.seconds / MONTH_S
        minutes = math.ceil(self.seconds / 60)
        flushes = 0
        if self.archive_bytes:
            by_size = math.ceil(self.archive_bytes / (self.buffer_mib * MIB))
            flushes = max(math.ceil(self.seconds / self.buffer_s), by_size)
        # ReceiveMessage returns and DeleteMessageBatch takes at most 10 messages per call
        polls = 2 * self.invocations * math.ceil(self.records_per_invocation / SQS_BATCH_MAX)
        sqs = self.actions + polls + self.alerts
        lambda_s = self.invocations * math.ceil(self.ms_per_invocation) / 1000
        kms = self.alerts + math.ceil(self.seconds / KMS_DATA_KEY_REUSE_S) * KMS_CACHING_RESOURCES
        # storage in a steady month: as many days of data as the retention keeps, at this rate
        per_day = 86_400 / self.seconds if self.seconds else 0.0
        items_gb = self.items * self.item_bytes * per_day * self.item_retention_days / GB
        archive_gb = self.archive_bytes * per_day * self.archive_retention_days / GB
        return {
            "iot.connection_minutes": (self.devices * minutes, f"{self.devices:,} connections x {minutes:,} min"),
            "iot.messages": (
                0.0 if self.basic_ingest else self.message_units,
                "Basic Ingest: no messaging charge"
                if self.basic_ingest
                else f"{self.messages:,.0f} messages in 5 KB units (payload and topic)",
            ),
            "iot.rules_triggered": (self.message_units, "each message the rule's FROM matches, in 5 KB units"),
            "iot.actions_executed": (self.actions, "the SQS action, per message the WHERE let through"),
            "sqs.requests": (
                sqs,
                f"a send per action, a receive and a delete per 10 records of an invocation "
                f"({self.records_per_invocation:.1f} records each), a send per alert to the tap",
            ),
            "lambda.requests": (self.invocations, f"{self.records_per_invocation:.1f} records per invocation"),
            "lambda.gb_seconds": (
                lambda_s * self.memory_mb / 1024,
                f"{math.ceil(self.ms_per_invocation)} ms per invocation at {self.memory_mb} MB",
            ),
            "dynamodb.write_request_units": (
                self.items * self.write_units_per_item + self.alert_writes,
                f"{self.write_units_per_item:.2f} WRU per item (mean of each rounded up to 1 KB), one per "
                "alert-state write",
            ),
            "dynamodb.storage_gb_month": (
                items_gb * months,
                f"a steady month's {self.item_retention_days:g} days of items (the table's TTL)",
            ),
            "firehose.ingested_gb": (
                self.archive_units * FIREHOSE_UNIT_BYTES / GB,
                "a record per invocation (its lines packed), rounded up to 5 KB",
            ),
            "s3.put_requests": (
                flushes + self.quarantined,
                f"an archive object per buffer flush ({self.buffer_mib:g} MiB or {self.buffer_s:g} s), "
                "one per quarantined record",
            ),
            "s3.storage_gb_month": (
                archive_gb * months,
                f"a steady month's {self.archive_retention_days:g} days of archive (its lifecycle), uncompressed",
            ),
            "sns.publishes": (self.alerts, "one per alert"),
            "kms.requests": (
                kms,
                f"one per publish to an encrypted topic, one per {KMS_DATA_KEY_REUSE_S} s for each of "
                f"{KMS_CACHING_RESOURCES} resources that cache data keys",
            ),
            "kms.keys": (self.keys * months, f"{self.keys} key, prorated"),
            "secretsmanager.secrets": (self.secrets * months, f"{self.secrets} secret, prorated"),
            "logs.ingested_gb": (
                self.log_bytes / GB,
                f"the processor's log events, {LOG_EVENT_OVERHEAD_BYTES} B each on top",
            ),
            "cloudwatch.alarms": (self.alarms * months, f"{self.alarms} alarms, prorated"),
        }


def iot_units(payload_sizes: Mapping[str, int], topic_bytes: int) -> tuple[int, int]:
    """(messages, 5 KB units) of a run summary's payload sizes, each message metered with its topic."""
    messages = sum(payload_sizes.values())
    units = sum(n * math.ceil((int(size) + topic_bytes) / IOT_UNIT_BYTES) for size, n in payload_sizes.items())
    return messages, units


def plan(
    rate_msg_s: float,
    devices: int,
    payload_bytes: int,
    topic_bytes: int = 40,
    seconds: float = MONTH_S,
    batch: int = 10,
    ms_per_invocation: float = 60.0,
    memory_mb: int = 512,
    item_overhead_bytes: int = 150,
    log_bytes_per_invocation: int = 1500,
    basic_ingest: bool = False,
) -> Traffic:
    """A planned load: every message valid and stored, archived once, nothing quarantined or alerted."""
    messages = rate_msg_s * seconds
    item_bytes = payload_bytes + item_overhead_bytes
    return Traffic(
        seconds=seconds,
        devices=devices,
        messages=int(messages),
        message_units=messages * math.ceil((payload_bytes + topic_bytes) / IOT_UNIT_BYTES),
        basic_ingest=basic_ingest,
        actions=int(messages),
        records_per_invocation=float(batch),
        ms_per_invocation=ms_per_invocation,
        memory_mb=memory_mb,
        items=int(messages),
        item_bytes=item_bytes,
        write_units_per_item=math.ceil(item_bytes / DYNAMODB_WRITE_UNIT_BYTES),
        alert_writes=0,
        archive_bytes=messages * (payload_bytes + 1),
        quarantined=0,
        alerts=0,
        log_bytes=messages / batch * log_bytes_per_invocation,
        basis={
            "plan": f"{rate_msg_s:,.0f} msg/s from {devices:,} devices, {payload_bytes} B payloads",
            "assumed": f"{ms_per_invocation:g} ms per invocation of {batch} records at {memory_mb} MB, items of "
            f"{item_bytes} B, {log_bytes_per_invocation} B of log events per invocation, nothing rejected or alerted",
        },
    )
