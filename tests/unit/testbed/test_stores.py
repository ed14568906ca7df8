"""Reading a log group page by page, as ministack serves FilterLogEvents (no tokens, 10,000 a page)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from typing import Any

from testbed.runs.stores import LOGS_PAGE_MAX, processor_logs
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
