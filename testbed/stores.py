"""Read what the pipeline stored: readings, archived lines, quarantined records, alerts."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from processor.quarantine import QUARANTINE_PREFIX
from processor.store import StoredReading, from_item

if TYPE_CHECKING:  # the stubs are a development dependency; a Stack and a Console are only passed in
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef
    from rich.console import Console

    from testbed.lifecycle.stack import Stack
from telemetry.outputs import StackOutputs
from telemetry.schema import sort_key
from testbed.exceptions import TestbedError

logger = logging.getLogger(__name__)
T = TypeVar("T")
RAW_PREFIX = "raw/"

UTC_SECOND = "%Y-%m-%dT%H:%M:%SZ"
# FilterLogEvents returns at most this many events per call.
LOGS_PAGE_MAX = 10_000
# A run's archive holds one object per invocation here: timing its messages reads at most this many.
ARCHIVE_SAMPLE_OBJECTS = 500


def _event_id(event: dict[str, Any]) -> Any:
    """AWS names each event; ministack does not, so its time, stream and text stand in."""
    return event.get("eventId") or (event["timestamp"], event.get("logStreamName"), event["message"])


def log_events(logs: Any, group: str, start_ms: int) -> Iterator[tuple[int, Any, str]]:
    """(timestamp ms, event id, message) of a log group from `start_ms` on, oldest first.

    FilterLogEvents returns the oldest events of the window first, a page at a time: AWS pages
    with `nextToken`; ministack returns one page of at most 10,000 without a token, so the next
    page starts at the last timestamp of the previous one (its events at that very millisecond,
    already seen, are skipped).
    """
    kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms, "limit": LOGS_PAGE_MAX}
    boundary: set[Any] = set()  # the events of the last page's last millisecond
    while True:
        page = logs.filter_log_events(**kwargs)
        events = [e for e in page.get("events", []) if _event_id(e) not in boundary]
        yield from ((e["timestamp"], _event_id(e), e["message"].rstrip("\n")) for e in events)
        token = page.get("nextToken")
        if token and token != kwargs.get("nextToken"):
            kwargs["nextToken"] = token
            continue
        if len(page.get("events", [])) < LOGS_PAGE_MAX or token:
            return
        last = page["events"][-1]["timestamp"]
        if not events:  # a whole page inside one millisecond: step past it rather than loop
            logger.warning("more than %d log events at %d ms; some of them are skipped", LOGS_PAGE_MAX, last)
            kwargs["startTime"], boundary = last + 1, set()
            continue
        kwargs["startTime"] = last
        boundary = {_event_id(e) for e in page["events"] if e["timestamp"] == last}


def log_line(at_ms: int, message: str) -> str:
    return f"{time.strftime(UTC_SECOND, time.gmtime(at_ms / 1000))} {message}"


def _json_lines(body: bytes) -> Iterator[Any]:
    """The lines of an archive object that are JSON; GZIP (AWS), a line not ours or nested past the
    interpreter's limit are passed over."""
    for line in body.splitlines():
        try:
            yield json.loads(line)
        except (ValueError, RecursionError):
            continue


def archived_key(document: Any) -> tuple[str, int] | None:
    """(device_id, msg_id) of an archived message, or None for anything else (a list for an id included)."""
    if not isinstance(document, dict):
        return None
    device_id, msg_id = document.get("device_id"), document.get("msg_id")
    if isinstance(device_id, str) and type(msg_id) is int:
        return device_id, msg_id
    return None


def processor_logs(logs: Any, group: str, since_s: float, limit: int) -> list[str]:
    """The latest `limit` lines of a log group written in the last `since_s` seconds, oldest first,
    each prefixed with its UTC time."""
    start_ms = int((time.time() - since_s) * 1000)
    latest = deque(((at, message) for at, _, message in log_events(logs, group, start_ms)), maxlen=limit)
    return [log_line(at, message) for at, message in latest]


class WaitTimeout(TestbedError, TimeoutError):
    """What was awaited did not appear in time."""


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float = 0.5) -> T:
    """Call `probe` until it returns something truthy; raise WaitTimeout naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue: a record the processor failed too often (its body is
    the message), or a rule error action's document (the original payload base64-encoded inside)."""

    body: str
    sent_ms: int
    document: dict[str, Any] | None  # the error action's document, if the body is one

    @property
    def payload(self) -> str:
        """What the device sent, as text."""
        if self.document is None:
            return self.body
        try:
            return base64.b64decode(self.document["base64OriginalPayload"], validate=True).decode(errors="replace")
        except (binascii.Error, TypeError, ValueError):
            return self.body


def _dead_letter(message: MessageTypeDef) -> DeadLetter:
    body = message["Body"]
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    document = parsed if isinstance(parsed, dict) and "base64OriginalPayload" in parsed else None
    return DeadLetter(body, int(message.get("Attributes", {}).get("SentTimestamp", "0")), document)


@dataclass
class Stores:
    outputs: StackOutputs
    dynamodb: DynamoDBClient
    s3: S3Client
    sqs: SQSClient
    # every alert drained from the tap is kept here too (JSON lines), so that what one reader drains
    # stays readable by the run it belongs to (a merge repeated, two runs on one stack)
    alert_journal: Path | None = None

    @classmethod
    def connect(cls, outputs: StackOutputs, client: Callable[[str], Any], alert_journal: Path | None = None) -> Stores:
        return cls(outputs, client("dynamodb"), client("s3"), client("sqs"), alert_journal)

    def reading(self, device_id: str, ts: int, msg_id: int) -> StoredReading | None:
        item = self.dynamodb.get_item(
            TableName=self.outputs.need("telemetry_table_name"),
            Key={"device_id": {"S": device_id}, "sk": {"S": sort_key(ts, msg_id)}},
            ConsistentRead=True,
        ).get("Item")
        return from_item(item) if item else None

    def readings(self, device_id: str) -> list[StoredReading]:
        items: list[StoredReading] = []
        kwargs: dict[str, Any] = {
            "TableName": self.outputs.need("telemetry_table_name"),
            "KeyConditionExpression": "device_id = :d",
            "ExpressionAttributeValues": {":d": {"S": device_id}},
        }
        while True:
            page = self.dynamodb.query(**kwargs)
            items += map(from_item, page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def stored_ids(self, device_ids: Iterable[str]) -> list[tuple[str, int]]:
        """(device_id, msg_id) of every item of these devices; a repeat would mean a duplicate item."""
        return [(d, item.msg_id) for d in device_ids for item in self.readings(d)]

    def dead_letters(self, since_ms: int = 0) -> list[DeadLetter]:
        """What the dead-letter queue holds that arrived since `since_ms`; every message is made
        visible again, so it stays for the user to inspect or redrive."""
        url, found, handles = self.outputs.dlq_url, [], []
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, AttributeNames=["SentTimestamp"]
            ).get("Messages", [])
            if not messages:
                break
            handles += [message["ReceiptHandle"] for message in messages]
            found += [letter for letter in map(_dead_letter, messages) if letter.sent_ms >= since_ms]
        for handle in handles:
            self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
        return found

    def ingest_queue_depth(self) -> int:
        """Messages in the ingest queue, waiting or in flight to the processor."""
        return self.queue_depth(self.outputs.ingest_queue_url)

    def queue_depth(self, queue_url: str) -> int:
        """Messages in a queue, waiting or in flight (approximate, as SQS counts them)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def telemetry_count(self) -> int:
        """Items in the telemetry table, counted by a paginated COUNT scan (reads every item: local use)."""
        table = self.outputs.need("telemetry_table_name")
        page = self.dynamodb.scan(TableName=table, Select="COUNT")
        count = page["Count"]
        while "LastEvaluatedKey" in page:
            page = self.dynamodb.scan(TableName=table, Select="COUNT", ExclusiveStartKey=page["LastEvaluatedKey"])
            count += page["Count"]
        return count

    def object_listing(self, prefix: str) -> list[tuple[str, int, float]]:
        """(key, size, last modified epoch s) of every object under `prefix`, without reading them."""
        paginator = self.s3.get_paginator("list_objects_v2")
        return [
            (obj["Key"], obj["Size"], obj["LastModified"].timestamp())
            for page in paginator.paginate(Bucket=self.outputs.need("archive_bucket_name"), Prefix=prefix)
            for obj in page.get("Contents", [])
        ]

    def _objects(self, prefix: str, since: float = 0.0) -> Iterator[tuple[str, bytes]]:
        for key, _, modified in self.object_listing(prefix):
            if modified >= since:
                yield key, self.s3.get_object(Bucket=self.outputs.need("archive_bucket_name"), Key=key)["Body"].read()

    def archived_lines(self, since: float = 0.0) -> list[bytes]:
        """Archived lines (one record each) of objects written since `since` (epoch s); GZIP on AWS
        is not handled here."""
        return [line for _, body in self._objects(RAW_PREFIX, since) for line in body.splitlines() if line]

    def archive_times(
        self, keys: set[tuple[str, int]], since: float = 0.0, max_objects: int = ARCHIVE_SAMPLE_OBJECTS
    ) -> dict[tuple[str, int], float]:
        """When each of these (device_id, msg_id) was first archived: its object's last-modified time
        (epoch s), from at most `max_objects` objects written since `since`, spread evenly over them."""
        listing = sorted((o for o in self.object_listing(RAW_PREFIX) if o[2] >= since), key=lambda o: o[2])
        found: dict[tuple[str, int], float] = {}
        for key, _, modified in listing[:: max(1, -(-len(listing) // max_objects))]:
            try:
                body = self.s3.get_object(Bucket=self.outputs.need("archive_bucket_name"), Key=key)["Body"].read()
            except ClientError as exc:  # gone since the listing (a lifecycle rule, a user)
                logger.debug("archive object %s not read: %s", key, exc)
                continue
            for document in _json_lines(body):
                message = archived_key(document)
                if message in keys:
                    found.setdefault(message, modified)
        return found

    def archived_messages(self, since: float = 0.0) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.archived_lines(since)]

    def quarantined(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Quarantine documents written since `since` (epoch s), with their object keys."""
        return [{**json.loads(body), "key": key} for key, body in self._objects(QUARANTINE_PREFIX, since)]

    def drain_alerts(self, wait_s: int = 1) -> list[dict[str, Any]]:
        """Receive and delete what the alerts tap queue holds: the alerts, with their SNS attributes
        (kept in the journal, if there is one, before the tap forgets them)."""
        alerts = [
            {**json.loads(envelope["Message"]), "attributes": envelope.get("MessageAttributes", {})}
            for envelope in self._drain(self.outputs.need("alerts_tap_queue_url"), wait_s)
        ]
        if alerts and self.alert_journal is not None:
            self.alert_journal.parent.mkdir(parents=True, exist_ok=True)
            with self.alert_journal.open("a+b") as journal:
                # a line a crash cut short stays on its own line, not glued to the next one
                cut = False
                if journal.seek(0, os.SEEK_END) > 0:
                    journal.seek(-1, os.SEEK_END)
                    cut = journal.read(1) != b"\n"
                text = "".join(json.dumps(alert) + "\n" for alert in alerts)
                journal.write((("\n" if cut else "") + text).encode())
        return alerts

    def alerts_of(self, device_ids: Iterable[str], wait_s: int = 1) -> list[dict[str, Any]]:
        """Every alert of these devices: what the tap holds now and, from the journal, what anyone
        drained before (a line a crash cut short is skipped)."""
        wanted = set(device_ids)
        drained = self.drain_alerts(wait_s)
        if self.alert_journal is None:
            return [a for a in drained if a.get("device_id") in wanted]
        found = []
        with contextlib.suppress(FileNotFoundError), self.alert_journal.open() as journal:
            for line in journal:
                try:
                    alert = json.loads(line)
                except ValueError:
                    continue
                if isinstance(alert, dict) and alert.get("device_id") in wanted:
                    found.append(alert)
        return found

    def drain_alarms(self, wait_s: int = 1) -> list[dict[str, Any]]:
        """Receive and delete what the ops tap queue holds: alarm state changes as CloudWatch sends them."""
        return [
            {**json.loads(envelope["Message"]), "topic_arn": envelope["TopicArn"]}
            for envelope in self._drain(self.outputs.need("ops_tap_queue_url"), wait_s)
        ]

    def _drain(self, queue_url: str, wait_s: int) -> list[dict[str, Any]]:
        """Receive and delete every SNS envelope a tap queue holds, parsed."""
        envelopes: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s).get(
                "Messages", []
            )
            if not messages:
                return envelopes
            envelopes += [json.loads(message["Body"]) for message in messages]
            self.sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )


def run_items(stores: Stores, device_ids: list[str], since_ms: int) -> list[StoredReading]:
    """The devices' items stored by this run (device ids repeat across runs of one fleet)."""
    return [i for d in device_ids for i in stores.readings(d) if i.stored_at_ms >= since_ms]


def stores_idle(stack: Stack, stores: Stores) -> bool:
    """No message waiting in the bridge or in flight in the ingest queue."""
    return int(stack.backend.ingress_counters().get("queued", 0)) == 0 and stores.ingest_queue_depth() == 0


def wait_for_drain(
    stack: Stack,
    stores: Stores,
    device_ids: list[str],
    since_ms: int,
    expected: int,
    timeout_s: float,
    console: Console,
    poll_s: float = 2.0,
) -> tuple[list[StoredReading], bool]:
    """Poll until the queues are empty and the expected readings are stored; (items, drained in time)."""
    deadline = time.time() + timeout_s
    items: list[StoredReading] = []
    with console.status("waiting for the pipeline to drain") as status:
        while time.time() < deadline:
            items = run_items(stores, device_ids, since_ms)
            status.update(f"stored {len(items):,} of {expected:,} expected")
            if len(items) >= expected and stores_idle(stack, stores):
                return items, True
            time.sleep(poll_s)
    console.print(
        f"[bold red]error:[/] the pipeline did not drain within {timeout_s:.0f} s: "
        f"{len(items):,} of {expected:,} expected readings stored"
    )
    return items, False
