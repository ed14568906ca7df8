"""BatchWriteItem chunking and retries, Firehose packing and partial retries, quarantine keys."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from processor.archive import FIREHOSE_MAX_RECORD_BYTES, Archiver, pack_lines
from processor.quarantine import quarantine_document, quarantine_key
from processor.retry import BACKOFF_CAP_SECONDS, MAX_ATTEMPTS, backoff_delay
from processor.store import ReadingStore, StoredReading, from_item, to_item
from processor.types import Rejection
from processor.validation import parse
from telemetry.reasons import RejectReason
from testbed.bench.fakes import FakeFirehose
from tests.conftest import make_message
from tests.unit.moto_aws import MotoAws

NOW = int(time.time() * 1000)


def items(n: int) -> list[dict[str, object]]:
    messages = [parse(json.dumps(make_message(msg_id=i, ts=NOW)), arrival_ms=NOW, max_skew_ms=1000) for i in range(n)]
    return [to_item(m, stored_at_ms=NOW, expires_at_s=0) for m in messages]


def store(aws: MotoAws, sleep: Callable[[float], None] = lambda _: None) -> ReadingStore:
    return ReadingStore(aws.dynamodb, aws.settings.telemetry_table, sleep=sleep)


def test_store_writes_in_chunks_of_25(aws: MotoAws) -> None:
    """Chunks of 25 exactly: the proxy refuses more per call, as DynamoDB does."""
    assert store(aws).put(items(60)) == set()
    assert len(aws.readings()) == 60
    assert aws.dynamodb.calls["BatchWriteItem"] == 3


def test_store_retries_unprocessed_items_and_throttling(aws: MotoAws) -> None:
    aws.dynamodb.leave_unprocessed(30)
    aws.dynamodb.fail("BatchWriteItem", "ThrottlingException")
    sleeps: list[float] = []
    assert store(aws, sleep=sleeps.append).put(items(40)) == set()
    assert len(aws.readings()) == 40
    assert sleeps, "retries back off"


def test_store_reports_what_stays_unprocessed(aws: MotoAws) -> None:
    aws.dynamodb.leave_unprocessed(None)
    failed = store(aws).put(items(3))
    assert len(failed) == 3
    assert aws.dynamodb.calls["BatchWriteItem"] == MAX_ATTEMPTS
    assert aws.readings() == []


def test_redelivered_message_lands_on_the_same_item(aws: MotoAws) -> None:
    readings = store(aws)
    readings.put(items(5))
    readings.put(items(5))
    assert len(aws.readings()) == 5


def test_backoff_is_bounded_and_grows() -> None:
    assert all(0 <= backoff_delay(a) <= BACKOFF_CAP_SECONDS for a in range(1, 20))
    assert max(backoff_delay(1) for _ in range(200)) <= 0.05


def test_lines_are_packed_whole_into_few_records() -> None:
    lines = [((i,), json.dumps({"i": i, "pad": "x" * 200})) for i in range(1000)]
    records = pack_lines(lines, max_record_bytes=50_000)
    assert 1 < len(records) < 10
    assert all(len(r.data) <= 50_000 for r in records)
    decoded = [json.loads(line) for r in records for line in bytes(r.data).splitlines()]
    assert [d["i"] for d in decoded] == list(range(1000))


def test_embedded_newlines_cannot_split_a_line() -> None:
    (record,) = pack_lines([("k", '{\n"a": 1\n}')])
    assert bytes(record.data).count(b"\n") == 1


def test_archiver_retries_only_failed_records() -> None:
    firehose = FakeFirehose(fail_first=1)
    lines = [((i,), json.dumps({"i": i, "pad": "x" * 1000})) for i in range(3000)]
    failed = Archiver(firehose, firehose.stream, sleep=lambda _: None).archive(lines)
    assert failed == set()
    archived = [json.loads(line)["i"] for line in firehose.lines()]
    assert sorted(archived) == list(range(3000)), "nothing lost, nothing archived twice"
    assert all(len(r) <= FIREHOSE_MAX_RECORD_BYTES for r in firehose.records)


def test_fake_firehose_refuses_what_aws_refuses() -> None:
    """The archiver's tests below mean something only if the fake enforces AWS's limits."""
    firehose = FakeFirehose()
    for records, code in [
        ([b"x"] * 501, "ValidationException"),
        ([b"x" * (1_024_000 + 1)], "ValidationException"),
        ([b"x" * 1_000_000] * 5, "InvalidArgumentException"),
    ]:
        with pytest.raises(ClientError) as caught:
            firehose.put_record_batch(DeliveryStreamName=firehose.stream, Records=[{"Data": r} for r in records])
        assert caught.value.response["Error"]["Code"] == code
    assert firehose.records == []


def test_archiver_keeps_each_call_within_500_records() -> None:
    firehose = FakeFirehose()
    lines = [((i,), json.dumps({"i": i})) for i in range(1001)]
    assert Archiver(firehose, firehose.stream, sleep=lambda _: None, max_record_bytes=1).archive(lines) == set()
    assert (len(firehose.records), firehose.calls) == (1001, 3)


def test_archiver_keeps_each_call_within_4_mib() -> None:
    firehose = FakeFirehose()
    lines = [((i,), json.dumps({"i": i, "pad": "x" * 900_000})) for i in range(10)]
    assert Archiver(firehose, firehose.stream, sleep=lambda _: None).archive(lines) == set()
    assert len(firehose.records) == 10 and firehose.calls == 3, "4 records of 900 KB per call at most"


def test_archiver_reports_keys_of_records_that_keep_failing() -> None:
    firehose = FakeFirehose(fail_first=10**6)
    assert Archiver(firehose, firehose.stream, sleep=lambda _: None).archive([("a", "{}"), ("b", "{}")]) == {"a", "b"}


def test_quarantine_keeps_reason_and_original_bytes() -> None:
    rejection = Rejection("rec/1", RejectReason.INVALID_JSON, "Expecting value", "{oops\udcff")
    key = quarantine_key(rejection, 0)
    assert key == "quarantine/reason=invalid_json/date=1970-01-01/rec_1.json"
    doc = quarantine_document(rejection, 0)
    assert doc["reason"] == "invalid_json"
    assert doc["body_encoding"] == "base64"


@pytest.mark.parametrize("body", ["plain text", '{"a": 1}'])
def test_quarantine_keeps_text_bodies_verbatim(body: str) -> None:
    doc = quarantine_document(Rejection("r", RejectReason.SCHEMA_VIOLATION, "x", body), 0)
    assert (doc["body"], doc["body_encoding"]) == (body, "utf-8")


def test_the_stored_item_is_the_message_in_dynamodbs_attribute_types() -> None:
    message = make_message(
        device_id="cc-1",
        msg_id=7,
        ts=int(time.time() * 1000),
        device_type="cold_chain",
        readings={"door_open": (True, "bool"), "latitude": (52.1234567891, "deg"), "battery": (80, "%")},
    )
    parsed = parse(json.dumps({**message, "site": "dock-3"}), arrival_ms=message["ts"], max_skew_ms=300_000)
    assert to_item(parsed, stored_at_ms=1_000, expires_at_s=2) == {
        "device_id": {"S": "cc-1"},
        "sk": {"S": parsed.sk},
        "msg_id": {"N": "7"},
        "ts": {"N": str(message["ts"])},
        "device_type": {"S": "cold_chain"},
        "firmware": {"S": message["firmware"]},
        "readings": {"M": {"door_open": {"BOOL": True}, "latitude": {"N": "52.123457"}, "battery": {"N": "80.0"}}},
        "stored_at": {"N": "1000"},
        "expires_at": {"N": "2"},
        "site": {"S": "dock-3"},
    }


def test_a_stored_item_reads_back_as_what_was_written() -> None:
    message = make_message(device_type="cold_chain", readings={"door_open": (False, "bool"), "battery": (55, "%")})
    parsed = parse(json.dumps(message), arrival_ms=message["ts"], max_skew_ms=300_000)
    assert from_item(
        to_item(parsed, stored_at_ms=5, expires_at_s=6, arrived_at_ms=3, invoked_at_ms=4)
    ) == StoredReading(
        device_id=parsed.device_id,
        sk=parsed.sk,
        msg_id=parsed.msg_id,
        ts=parsed.ts,
        device_type="cold_chain",
        firmware=parsed.firmware,
        readings={"door_open": False, "battery": 55.0},
        stored_at_ms=5,
        expires_at_s=6,
        site=parsed.site,
        arrived_at_ms=3,
        invoked_at_ms=4,
    )
