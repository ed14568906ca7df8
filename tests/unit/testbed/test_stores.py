"""Reading a log group page by page, as ministack serves FilterLogEvents (no tokens, 10,000 a page)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from testbed.stores import LOGS_PAGE_MAX, archived_key, processor_logs
from tests.unit.moto_aws import MotoAws


class MinistackLogs:
    """FilterLogEvents as ministack answers it: the window's oldest events first, no nextToken."""

    def __init__(self, events: list[tuple[int, str]]) -> None:
        self.events: list[dict[str, Any]] = [
            {"timestamp": ts, "message": m, "logStreamName": "s"} for ts, m in sorted(events)
        ]
        self.calls = 0

    def filter_log_events(self, logGroupName: str, startTime: int, limit: int = LOGS_PAGE_MAX) -> dict[str, Any]:
        self.calls += 1
        assert self.calls < 100, "paging must end"
        return {"events": [e for e in self.events if e["timestamp"] >= startTime][: min(limit, LOGS_PAGE_MAX)]}


def now_ms() -> int:
    return int(time.time() * 1000)


def test_the_latest_lines_come_from_beyond_the_first_page() -> None:
    start = now_ms() - 60_000
    logs = MinistackLogs([(start + n, f"line {n}") for n in range(25_000)])
    lines = processor_logs(logs, "g", since_s=120, limit=3)
    assert [line.split(" ", 1)[1] for line in lines] == ["line 24997", "line 24998", "line 24999"]


def test_a_page_inside_one_millisecond_neither_loops_nor_hides_what_follows() -> None:
    start = now_ms() - 60_000
    crowded = [(start, f"burst {n}") for n in range(LOGS_PAGE_MAX + 500)]
    logs = MinistackLogs([*crowded, (start + 5, "after 1"), (start + 6, "after 2")])
    lines = processor_logs(logs, "g", since_s=120, limit=2)
    assert [line.split(" ", 1)[1] for line in lines] == ["after 1", "after 2"]


def test_dead_letters_are_read_decoded_and_left_in_the_queue(aws: MotoAws) -> None:
    sqs = aws.clients.sqs
    url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    stores = dataclasses.replace(aws.stores, outputs=dataclasses.replace(aws.stores.outputs, dlq_url=url))
    document = {
        "topic": "sensors/d1/telemetry",
        "base64OriginalPayload": base64.b64encode(b'{"device_id":"d1"}').decode(),
    }
    for body in ('{"device_id":"d0"}', json.dumps(document), json.dumps({**document, "base64OriginalPayload": "%%"})):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    letters = stores.dead_letters()
    assert [letter.payload for letter in letters] == ['{"device_id":"d0"}', '{"device_id":"d1"}', letters[2].body]
    assert [letter.document is not None for letter in letters] == [False, True, True]
    assert len(stores.dead_letters()) == 3, "read again: every message stayed in the queue"
    assert stores.dead_letters(since_ms=letters[-1].sent_ms + 60_000) == []


def test_archive_times_are_the_first_object_holding_each_message(aws: MotoAws) -> None:
    """Each message's archive time is the first object that holds it; lines that are not JSON (GZIP on
    AWS) or not the run's are passed over; with a cap, objects are sampled, never more than the cap."""
    s3, bucket = aws.clients.s3, aws.stores.outputs.need("archive_bucket_name")
    objects = {
        "raw/a": b'{"device_id": "d1", "msg_id": 1}\n{"device_id": "d1", "msg_id": 2}\n',
        "raw/b": b'\x1f\x8b not json\n{"device_id": "d9", "msg_id": 1}\n[1, 2]\n',
        "raw/c": b'{"device_id": "d1", "msg_id": 2}\n{"device_id": "d2", "msg_id": 7}\n',
        "quarantine/x": b'{"device_id": "d2", "msg_id": 8}\n',
    }
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        time.sleep(1.05)  # S3 stamps objects to the second
    keys = {("d1", 1), ("d1", 2), ("d2", 7), ("d2", 8)}
    times = aws.stores.archive_times(keys)
    assert set(times) == {("d1", 1), ("d1", 2), ("d2", 7)}
    assert times[("d1", 1)] == times[("d1", 2)] < times[("d2", 7)]
    assert aws.stores.archive_times(keys, since=time.time() + 60) == {}
    assert set(aws.stores.archive_times(keys, max_objects=1)) == {("d1", 1), ("d1", 2)}


def test_a_hostile_archive_object_times_nothing_and_breaks_nothing(aws: MotoAws) -> None:
    """Ids that are lists or dicts (unhashable), nesting past the recursion limit, a float msg_id."""
    s3, bucket = aws.clients.s3, aws.stores.outputs.need("archive_bucket_name")
    hostile = b"\n".join(
        [
            b'{"device_id": ["d1"], "msg_id": 1}',
            b'{"device_id": "d1", "msg_id": {"a": 1}}',
            b'{"device_id": "d1", "msg_id": 1.0}',
            b"[" * 100_000,
            b'{"device_id": "d1", "msg_id": 1}',
        ]
    )
    s3.put_object(Bucket=bucket, Key="raw/hostile", Body=hostile)
    assert set(aws.stores.archive_times({("d1", 1)})) == {("d1", 1)}
    assert [archived_key(d) for d in ({"device_id": "d", "msg_id": True}, [1], {"device_id": "d", "msg_id": 3})] == [
        None,
        None,
        ("d", 3),
    ]


def test_an_alert_drained_by_one_reader_stays_the_runs_to_read_again(aws: MotoAws, tmp_path: Path) -> None:
    """A merge drained the tap, another run's start drained it again: before the journal, the second
    merge of the same run found none of its alerts and FAILED its alert check for nothing."""
    sqs, url = aws.clients.sqs, aws.stores.outputs.alerts_tap_queue_url
    assert url
    journal = tmp_path / "alerts.jsonl"
    stores = dataclasses.replace(aws.stores, alert_journal=journal)
    elsewhere = dataclasses.replace(aws.stores, alert_journal=journal)

    def alert(device_id: str) -> None:
        message = json.dumps({"device_id": device_id, "rule": "threshold_high", "ts": now_ms()})
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Message": message}))

    alert("run-a-1")
    alert("run-b-1")
    assert len(elsewhere.drain_alerts(wait_s=0)) == 2  # another reader empties the tap
    alert("run-a-2")
    with journal.open("a") as file:
        file.write('{"device_id": "run-a-3", "rule": "thr')  # a line a crash cut short
    first = stores.alerts_of(["run-a-1", "run-a-2", "run-a-3"], wait_s=0)
    assert sorted(a["device_id"] for a in first) == ["run-a-1", "run-a-2"]
    again = stores.alerts_of(["run-a-1", "run-a-2"], wait_s=0)
    assert again == first, "reading a run's alerts again gives the same alerts"
    assert journal.read_text().count("\n\n") == 0, "a whole journal gets no blank lines"
