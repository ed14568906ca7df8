"""A batch through the pipeline and the handler: every record stored, quarantined or retried."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from processor import handler, validation
from processor import pipeline as pipeline_module
from processor.pipeline import BatchOutcome
from processor.signature import KEY_REFRESH_MIN_SECONDS
from processor.store import from_item
from processor.types import InboundRecord, Telemetry
from telemetry.reasons import RejectReason
from telemetry.schema import ARRIVAL_ATTRIBUTE, sign
from testbed.bench.fakes import SIGNING_KEY, FakeLambdaContext, sqs_event
from tests.conftest import examples, make_message
from tests.unit.moto_aws import MotoAws

# How long a message may sit in the queue (a stalled consumer) before it is processed.
STALL_MS = 3_600_000


def invoke(aws: MotoAws, bodies: list[str]) -> dict[str, Any]:
    return invoke_event(aws, sqs_event(bodies))


def invoke_event(aws: MotoAws, event: dict[str, Any]) -> dict[str, Any]:
    handler._pipeline = aws.pipeline()
    try:
        return dict(handler.lambda_handler(event, FakeLambdaContext()))
    finally:
        handler._pipeline = None


def arriving_now(*pairs: tuple[str, str]) -> list[InboundRecord]:
    """(record id, body) pairs as records that reached the queue just now."""
    now_ms = int(time.time() * 1000)
    return [InboundRecord(record_id, body, now_ms) for record_id, body in pairs]


def failed_ids(response: dict[str, Any]) -> set[str]:
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}


def test_mixed_batch(aws: MotoAws) -> None:
    valid = json.dumps(make_message(msg_id=1))
    hot = json.dumps(make_message(msg_id=2, readings={"temperature": (60.0, "C")}))
    forged = json.dumps(make_message(msg_id=3, key=b"forged"))
    bodies = [valid, hot, forged, "{oops", valid]
    response = invoke(aws, bodies)
    assert failed_ids(response) == set()
    assert len(aws.readings()) == 2
    assert len(aws.firehose.lines()) == 2 and len(aws.firehose.records) == 1
    assert sorted(quarantined(aws).values()) == ["bad_signature", "invalid_json"]
    details = {doc["reason"]: doc["detail"] for doc in aws.quarantined()}
    assert details["invalid_json"].startswith("Expecting property name") and details["bad_signature"]
    assert [alert["msg_id"] for alert in aws.alerts()] == [2]


def test_duplicates_in_a_batch_are_stored_and_alerted_once(aws: MotoAws) -> None:
    hot = json.dumps(make_message(msg_id=7, readings={"temperature": (60.0, "C")}))
    outcome = aws.pipeline().process(arriving_now(("a", hot), ("b", hot), ("c", hot)))
    assert (outcome.accepted, outcome.duplicates, outcome.alerts) == (1, 2, 1)
    assert len(aws.readings()) == 1 and len(aws.firehose.lines()) == 1


def test_redelivery_across_batches_stores_and_alerts_once(aws: MotoAws) -> None:
    hot = json.dumps(make_message(msg_id=7, readings={"temperature": (60.0, "C")}))
    pipeline = aws.pipeline()
    pipeline.process(arriving_now(("a", hot)))
    pipeline.process(arriving_now(("a", hot)))
    assert len(aws.readings()) == 1
    assert len(aws.alerts()) == 1


def test_transient_store_failure_retries_just_those_records(aws: MotoAws) -> None:
    aws.dynamodb.leave_unprocessed(None)
    bodies = [json.dumps(make_message(msg_id=i)) for i in range(3)] + ["not json"]
    response = invoke(aws, bodies)
    assert failed_ids(response) == {"m0", "m1", "m2"}, "the poison record is quarantined, not retried"
    assert aws.firehose.records == [], "nothing is archived before it is stored"
    aws.dynamodb.recover()
    assert failed_ids(invoke(aws, bodies[:3])) == set()
    assert len(aws.readings()) == 3 and len(aws.firehose.lines()) == 3


def test_partial_failures_lose_and_duplicate_nothing(aws: MotoAws) -> None:
    aws.dynamodb.leave_unprocessed(7)
    aws.dynamodb.fail("BatchWriteItem", "ThrottlingException")
    aws.firehose.fail_first = 1
    bodies = [json.dumps(make_message(device_id=f"d{i % 5}", msg_id=i)) for i in range(100)]
    assert failed_ids(invoke(aws, bodies)) == set()
    assert len(aws.readings()) == 100
    lines = [json.loads(line)["msg_id"] for line in aws.firehose.lines()]
    assert sorted(lines) == list(range(100))


def test_archive_failure_retries_records_without_losing_them(aws: MotoAws) -> None:
    aws.firehose.fail_first = 10**6
    bodies = [json.dumps(make_message(msg_id=i)) for i in range(2)]
    assert failed_ids(invoke(aws, [*bodies, "{"])) == {"m0", "m1"}
    aws.firehose.fail_first = 0
    assert failed_ids(invoke(aws, bodies)) == set()
    assert len(aws.readings()) == 2 and len(aws.firehose.lines()) == 2


@pytest.mark.parametrize("failing", ["dynamodb", "firehose"])
def test_a_record_whose_write_failed_alerts_only_when_its_retry_succeeds(aws: MotoAws, failing: str) -> None:
    """Alerts are for accepted records: one not stored or not archived is retried, may end in the
    DLQ, and must not have alerted meanwhile."""
    hot = json.dumps(make_message(msg_id=1, readings={"temperature": (60.0, "C")}))
    pipeline = aws.pipeline()
    aws.dynamodb.leave_unprocessed(None if failing == "dynamodb" else 0)
    aws.firehose.fail_first = 10**6 if failing == "firehose" else 0
    outcome = pipeline.process(arriving_now(("a", hot)))
    assert (outcome.failed, outcome.alerts, aws.alerts()) == ({"a"}, 0, [])
    aws.dynamodb.recover()
    aws.firehose.fail_first = 0
    outcome = pipeline.process(arriving_now(("a", hot)))
    assert (outcome.failed, outcome.alerts, len(aws.alerts())) == (set(), 1, 1)


def test_quarantine_failure_retries_the_rejected_record(aws: MotoAws) -> None:
    aws.s3.fail("PutObject", "SlowDown", times=None)
    assert failed_ids(invoke(aws, ["{", json.dumps(make_message())])) == {"m0"}
    assert quarantined(aws) == {}


def test_secret_outage_defers_the_whole_batch(aws: MotoAws) -> None:
    aws.secrets.fail("GetSecretValue", "InternalServiceError", times=None)
    with pytest.raises(BatchProcessingError):
        invoke(aws, [json.dumps(make_message())])
    assert aws.readings() == []


def test_lag_is_measured_from_device_time(aws: MotoAws) -> None:
    ts = int(time.time() * 1000) - 2000
    outcome = aws.pipeline().process(arriving_now(("a", json.dumps(make_message(ts=ts)))))
    assert 2000 <= outcome.lag_ms[0] < 10_000


def test_each_item_carries_when_it_arrived_and_when_its_batch_began(aws: MotoAws) -> None:
    """The hops of a reading's path: device -> rule hand-off (arrived_at) -> invocation -> stored."""
    ts = int(time.time() * 1000) - 3000
    arrived = ts + 1000
    before_ms = int(time.time() * 1000)
    bodies = [json.dumps(make_message(ts=ts, msg_id=n)) for n in (1, 2)]
    aws.pipeline().process([InboundRecord("a", bodies[0], arrived), InboundRecord("b", bodies[1], arrived + 5)])
    items = sorted((from_item(dict(i)) for i in aws.dynamodb.written), key=lambda r: r.msg_id)
    assert [i.arrived_at_ms for i in items] == [arrived, arrived + 5]
    invoked = {i.invoked_at_ms for i in items}
    assert len(invoked) == 1, "one invocation, one start"
    (start,) = invoked
    assert start is not None and before_ms <= start <= items[0].stored_at_ms


@hsettings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=12))
def test_any_bytes_end_stored_or_quarantined_and_the_handler_never_raises(aws: MotoAws, payloads: list[bytes]) -> None:
    aws.start_example()
    bodies = [p.decode("utf-8", "surrogateescape") for p in payloads]
    response = invoke(aws, bodies)
    assert failed_ids(response) == set()
    reasons = quarantined(aws)
    assert set(reasons) == {f"m{i}" for i in range(len(bodies))}
    assert set(reasons.values()) <= {r.value for r in RejectReason}


@hsettings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["valid", "mutated", "junk"]), min_size=1, max_size=10), st.randoms())
def test_mixed_records_each_end_stored_or_quarantined(aws: MotoAws, kinds: list[str], rnd: Any) -> None:
    aws.start_example()
    bodies = []
    for i, kind in enumerate(kinds):
        body = json.dumps(make_message(device_id=f"p{i}", msg_id=i))
        if kind == "mutated":
            pos = rnd.randrange(len(body))
            body = body[:pos] + rnd.choice('x"{}0 ') + body[pos + 1 :]
        elif kind == "junk":
            body = "".join(rnd.choice('ab{}[]",:0') for _ in range(rnd.randrange(40)))
        bodies.append(body)
    assert failed_ids(invoke(aws, bodies)) == set()
    stored = {item["device_id"]["S"] for item in aws.dynamodb.written}
    rejected = quarantined(aws)
    for i in range(len(bodies)):
        assert (f"p{i}" in stored) != (f"m{i}" in rejected), f"record {i} must end in exactly one place"


def quarantined(aws: MotoAws) -> dict[str, str]:
    """record id -> quarantine reason, read back from the bucket."""
    return {doc["record_id"]: doc["reason"] for doc in aws.quarantined()}


def resigned(message: dict[str, Any], **changes: Any) -> str:
    """The message with its fields changed and signed again, so only the change can reject it."""
    message = {**message, **changes}
    message.pop("sig")
    message["sig"] = sign(message, SIGNING_KEY)
    return json.dumps(message)


def process_one_hostile(aws: MotoAws, hostile: str) -> BatchOutcome:
    """The hostile body between two valid neighbours, which must both be accepted."""
    before, after = (json.dumps(make_message(device_id=f"n{i}")) for i in range(2))
    outcome = aws.pipeline().process(arriving_now(("before", before), ("hostile", hostile), ("after", after)))
    assert outcome.failed == set() and outcome.accepted == 2, "the neighbours are stored"
    return outcome


@pytest.mark.parametrize("sig", ["é" * 64, "\ud800", "ñ"])
def test_non_ascii_signature_is_a_bad_signature(aws: MotoAws, sig: str) -> None:
    process_one_hostile(aws, json.dumps({**make_message(), "sig": sig}))
    assert quarantined(aws) == {"hostile": "bad_signature"}


def test_integer_reading_too_large_for_a_float_is_out_of_range(aws: MotoAws) -> None:
    message = make_message()
    readings = {"temperature": {"value": 10**400, "unit": "C"}}
    process_one_hostile(aws, resigned(message, readings=readings))
    assert quarantined(aws) == {"hostile": "out_of_range"}


@pytest.mark.parametrize("field", ["site", "firmware"])
def test_lone_surrogate_in_a_string_is_invalid_encoding(aws: MotoAws, field: str) -> None:
    body = json.dumps({**make_message(), field: "\ud800"})
    assert "\\ud800" in body, "sent as a JSON escape: the body itself is valid UTF-8"
    process_one_hostile(aws, body)
    assert quarantined(aws) == {"hostile": "invalid_encoding"}


@pytest.mark.parametrize("field", ["ts", "msg_id", "schema_version"])
def test_integral_float_for_an_integer_field_is_rejected(aws: MotoAws, field: str) -> None:
    message = make_message()
    process_one_hostile(aws, resigned(message, **{field: float(message[field])}))
    expected = "unsupported_schema_version" if field == "schema_version" else "schema_violation"
    assert quarantined(aws) == {"hostile": expected}


def test_a_deeply_nested_body_is_invalid_json_not_an_internal_error(aws: MotoAws) -> None:
    """The decoder gives up on deep nesting with RecursionError: the body's fault, not the processor's."""
    process_one_hostile(aws, "[" * 8000 + "]" * 8000)
    assert quarantined(aws) == {"hostile": "invalid_json"}


def test_unexpected_validation_error_quarantines_only_that_record(
    aws: MotoAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    def parse(body: str, **kwargs: Any) -> Telemetry:
        if "boom" in body:
            raise LookupError("boom")
        return validation.parse(body, **kwargs)

    monkeypatch.setattr(pipeline_module, "parse", parse)
    process_one_hostile(aws, '{"boom": 1}')
    assert quarantined(aws) == {"hostile": "internal_error"}
    (doc,) = aws.quarantined()
    assert doc["detail"] == "LookupError: boom"


@pytest.mark.parametrize("stage", ["to_item", "evaluate"])
def test_unexpected_error_in_a_later_stage_retries_only_that_record(
    aws: MotoAws, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    real = getattr(pipeline_module, stage)

    def flaky(message: Telemetry, *args: Any, **kwargs: Any) -> Any:
        if message.device_id == "bad":
            raise RuntimeError("boom")
        return real(message, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, stage, flaky)
    bodies = [json.dumps(make_message(device_id=d)) for d in ("n0", "bad", "n1")]
    outcome = aws.pipeline().process(arriving_now(*zip(["a", "b", "c"], bodies, strict=True)))
    assert outcome.failed == {"b"} and outcome.accepted == 2


def test_unexpected_archive_error_retries_the_batch_without_raising(aws: MotoAws) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("boom")

    aws.firehose.put_record_batch = broken  # type: ignore[method-assign,assignment]
    bodies = [json.dumps(make_message(msg_id=i)) for i in range(2)]
    outcome = aws.pipeline().process(arriving_now(("a", bodies[0]), ("b", bodies[1]), ("c", "{")))
    assert outcome.failed == {"a", "b"} and quarantined(aws) == {"c": "invalid_json"}


def test_two_devices_sharing_a_msg_id_and_ts_are_two_readings(aws: MotoAws) -> None:
    """Message ids count per device: deduplication must not take one device's reading for another's."""
    now = int(time.time() * 1000)
    bodies = [json.dumps(make_message(device_id=d, msg_id=5, ts=now)) for d in ("env-a", "env-b")]
    outcome = aws.pipeline().process(arriving_now(*zip(["a", "b"], bodies, strict=True)))
    assert (outcome.accepted, outcome.duplicates) == (2, 0)
    assert sorted(device for device, _ in aws.readings()) == ["env-a", "env-b"]
    assert sorted(json.loads(line)["device_id"] for line in aws.firehose.lines()) == ["env-a", "env-b"]


def test_same_msg_id_with_another_timestamp_is_a_different_reading(aws: MotoAws) -> None:
    now = int(time.time() * 1000)
    first, second = (json.dumps(make_message(msg_id=5, ts=now - d)) for d in (0, 1000))
    outcome = aws.pipeline().process(arriving_now(("a", first), ("b", second)))
    assert (outcome.accepted, outcome.duplicates) == (2, 0)
    assert len(aws.readings()) == 2 and len(aws.firehose.lines()) == 2


@pytest.mark.parametrize(("sent", "accepted"), [(True, True), (False, False)])
def test_clock_skew_is_measured_from_arrival(aws: MotoAws, sent: bool, accepted: bool) -> None:
    """A message redelivered after a long stall is judged by when it arrived, not when it is processed."""
    arrived = int(time.time() * 1000) - STALL_MS
    event = sqs_event([json.dumps(make_message(ts=arrived))])
    if sent:
        event["Records"][0]["attributes"]["SentTimestamp"] = str(arrived)
    assert failed_ids(invoke_event(aws, event)) == set()
    assert (len(aws.readings()) == 1) is accepted
    assert quarantined(aws) == ({} if accepted else {"m0": "timestamp_skew"})


def test_a_redriven_record_is_judged_by_its_first_arrival(aws: MotoAws) -> None:
    """A redrive from the DLQ is sent anew (a fresh SentTimestamp) but keeps the first arrival in an attribute."""
    arrived = int(time.time() * 1000) - STALL_MS
    event = sqs_event([json.dumps(make_message(ts=arrived))])
    event["Records"][0]["messageAttributes"] = {ARRIVAL_ATTRIBUTE: {"stringValue": str(arrived), "dataType": "Number"}}
    assert failed_ids(invoke_event(aws, event)) == set()
    assert len(aws.readings()) == 1 and quarantined(aws) == {}


@pytest.mark.parametrize("sent", ["", "soon", "-5", "1e12", str(10**30)])
def test_unusable_sent_timestamp_falls_back_to_now(aws: MotoAws, sent: str) -> None:
    event = sqs_event([json.dumps(make_message())])
    event["Records"][0]["attributes"]["SentTimestamp"] = sent
    assert failed_ids(invoke_event(aws, event)) == set()
    assert len(aws.readings()) == 1


def test_a_rotated_key_is_accepted_before_the_cache_expires(aws: MotoAws) -> None:
    clock = [time.time()]
    pipeline = aws.pipeline(clock=lambda: clock[0])
    pipeline.process(arriving_now(("a", json.dumps(make_message(msg_id=1)))))
    aws.rotate_key(b"new-key")
    clock[0] += KEY_REFRESH_MIN_SECONDS + 1
    outcome = pipeline.process(arriving_now(("b", json.dumps(make_message(msg_id=2, key=b"new-key")))))
    assert outcome.accepted == 1 and quarantined(aws) == {}


def test_an_early_key_reload_that_fails_retries_only_that_record(aws: MotoAws) -> None:
    clock = [time.time()]
    pipeline = aws.pipeline(clock=lambda: clock[0])
    pipeline.process(arriving_now(("a", json.dumps(make_message(msg_id=1)))))
    aws.secrets.fail("GetSecretValue", "InternalServiceError", times=None)
    clock[0] += KEY_REFRESH_MIN_SECONDS + 1
    maybe_rotated = json.dumps(make_message(msg_id=2, key=b"new-key"))
    outcome = pipeline.process(arriving_now(("b", maybe_rotated), ("c", json.dumps(make_message(msg_id=3)))))
    assert outcome.failed == {"b"} and outcome.accepted == 1 and quarantined(aws) == {}


@pytest.mark.parametrize("event", [{"Records": []}, {}], ids=["no-records", "no-records-key"])
def test_an_event_without_records_fails_nothing(aws: MotoAws, event: dict[str, Any]) -> None:
    assert invoke_event(aws, event) == {"batchItemFailures": []}


def test_an_sns_outage_costs_a_batch_one_failed_publish_not_one_per_alert(aws: MotoAws) -> None:
    """Every failed publish waits out the SDK's backoff: tried for each alert of a large batch, the
    invocation outlives its timeout, is killed and may die between a publish and its record, which
    sends that alert twice. After the first failure the batch's other alerts wait for redelivery."""
    aws.sns.fail("Publish", "Throttling", times=None)
    bodies = [
        json.dumps(make_message(device_id=f"d{i}", msg_id=i, readings={"temperature": (60.0, "C")})) for i in range(20)
    ]
    calm = json.dumps(make_message(device_id="calm", msg_id=99))
    outcome = aws.pipeline().process(arriving_now(*((f"r{i}", b) for i, b in enumerate([*bodies, calm]))))
    assert aws.sns.calls["Publish"] == 1
    assert outcome.failed == {f"r{i}" for i in range(20)}, "every alerting record is retried, the calm one is not"
    assert len(aws.readings()) == 21, "stored before alerting: the retry rewrites the same items"
    aws.sns.recover()
    outcome = aws.pipeline().process(arriving_now(*((f"r{i}", b) for i, b in enumerate(bodies))))
    assert (outcome.failed, outcome.alerts, len(aws.alerts())) == (set(), 20, 20)


def test_no_alert_is_published_in_the_last_second_of_the_invocation(aws: MotoAws) -> None:
    """A publish started near the deadline may be cut off by it after SNS took the alert and before
    the claim says so: the redelivery would publish it again. Those records wait for redelivery."""
    hot = json.dumps(make_message(msg_id=1, readings={"temperature": (60.0, "C")}))
    start = time.time()
    pipeline = aws.pipeline(clock=lambda: start + 4.0 * len(aws.firehose.records))  # archiving takes 4 s
    outcome = pipeline.process(arriving_now(("a", hot)), lease_s=4.5)
    assert (outcome.failed, aws.sns.calls["Publish"], aws.alerts()) == ({"a"}, 0, [])
    assert len(aws.readings()) == 1 and len(aws.firehose.lines()) == 1, "stored and archived in time"
    outcome = aws.pipeline().process(arriving_now(("a", hot)), lease_s=4.5)
    assert (outcome.failed, outcome.alerts, len(aws.alerts())) == (set(), 1, 1)


@pytest.mark.parametrize(("write_s", "lease_s", "stored"), [(1.0, 4.5, 75), (1.5, 5.0, 50)])
def test_a_large_batch_near_its_deadline_stores_what_fits_and_retries_only_the_rest(
    aws: MotoAws, write_s: float, lease_s: float, stored: int
) -> None:
    """A slow table and a large batch: killed at its timeout, the invocation would be retried whole
    and could be killed again on every delivery. A write starts only while one as long as the longest
    so far and the margin (a fifth of the time, at most 1 s) still fit: what it stored is archived
    and done, only the rest is retried."""
    start = time.time()
    pipeline = aws.pipeline(clock=lambda: start + aws.dynamodb.calls["BatchWriteItem"] * write_s)
    bodies = [(f"r{i}", json.dumps(make_message(device_id=f"d{i % 7}", msg_id=i))) for i in range(100)]
    outcome = pipeline.process(arriving_now(*bodies), lease_s=lease_s)
    assert aws.dynamodb.calls["BatchWriteItem"] == stored // 25
    assert (len(aws.readings()), len(aws.firehose.lines())) == (stored, stored), "stored and archived: done"
    assert outcome.failed == {f"r{i}" for i in range(stored, 100)}
    outcome = aws.pipeline().process(arriving_now(*(b for b in bodies if b[0] in outcome.failed)))
    assert outcome.failed == set() and (len(aws.readings()), len(aws.firehose.lines())) == (100, 100)


def test_a_throttled_write_is_not_retried_past_the_deadline(aws: MotoAws) -> None:
    """The SDK-level retries of one chunk (six attempts with backoff) are held to the deadline too."""
    aws.dynamodb.fail("BatchWriteItem", "ProvisionedThroughputExceededException", times=None)
    start = time.time()
    pipeline = aws.pipeline(clock=lambda: start + aws.dynamodb.calls["BatchWriteItem"] * 1.0)
    outcome = pipeline.process(arriving_now(("a", json.dumps(make_message()))), lease_s=3.5)  # margin 0.7 s
    assert aws.dynamodb.calls["BatchWriteItem"] == 2, "after 1 s and 2 s: 1.5 s left, under 1 s + 0.7 s"
    assert outcome.failed == {"a"}


def test_a_function_with_a_one_second_timeout_still_stores_archives_and_alerts(aws: MotoAws) -> None:
    """The margins shrink with the invocation's time: a fixed second would leave a 1 s function nothing."""
    hot = json.dumps(make_message(msg_id=1, readings={"temperature": (60.0, "C")}))
    start = time.time()
    outcome = aws.pipeline(clock=lambda: start + 0.1 * aws.dynamodb.calls["BatchWriteItem"]).process(
        arriving_now(("a", hot)), lease_s=1.0
    )
    assert (outcome.failed, outcome.alerts, len(aws.readings()), len(aws.firehose.lines())) == (set(), 1, 1, 1)


def test_a_table_slower_than_the_deadline_still_stores_a_chunk_on_every_delivery(aws: MotoAws) -> None:
    start = time.time()
    pipeline = aws.pipeline(clock=lambda: start + aws.dynamodb.calls["BatchWriteItem"] * 10.0)
    bodies = [(f"r{i}", json.dumps(make_message(device_id="d", msg_id=i))) for i in range(60)]
    outcome = pipeline.process(arriving_now(*bodies), lease_s=5.0)
    assert (aws.dynamodb.calls["BatchWriteItem"], len(aws.readings()), len(outcome.failed)) == (1, 25, 60)


def test_a_batch_that_reaches_the_store_inside_its_margin_still_writes_one_chunk(aws: MotoAws) -> None:
    """Validation took the time: the first chunk is written anyway, or no delivery would ever store."""
    start, calls = time.time(), iter(range(10**6))
    pipeline = aws.pipeline(clock=lambda: start + (0.0 if next(calls) == 0 else 1.3))  # 1.3 s pass at once
    bodies = [(f"r{i}", json.dumps(make_message(device_id="d", msg_id=i))) for i in range(60)]
    outcome = pipeline.process(arriving_now(*bodies), lease_s=1.5)  # margin 0.3 s; 0.2 s left
    assert (len(aws.readings()), len(aws.firehose.lines()), len(outcome.failed)) == (25, 0, 60)


def test_an_anomaly_held_back_by_a_failed_alert_is_still_raised_on_its_retry(aws: MotoAws) -> None:
    """The anomaly baseline must not learn a reading whose alert was not sent: on its return to the
    same warm container it would be part of the mean it is scored against, and no longer stand out."""
    pipeline = aws.pipeline()
    now = int(time.time() * 1000)

    def reading(device_id: str, msg_id: int, temperature: float) -> str:
        ts, readings = now - 60_000 + msg_id * 100, {"temperature": (temperature, "C")}
        return json.dumps(make_message(device_id=device_id, msg_id=msg_id, ts=ts, readings=readings))

    calm = [(f"c{i}", reading("steady", i, 20.0)) for i in range(1, 31)]
    assert pipeline.process(arriving_now(*calm)).failed == set()
    hot, odd = ("h", reading("hot", 100, 60.0)), ("o", reading("steady", 101, 21.5))  # 60 C breaches; 21.5 is 7.5 sigma
    aws.sns.fail("Publish", "Throttling", times=1)
    assert pipeline.process(arriving_now(hot, odd)).failed == {"h", "o"}
    outcome = pipeline.process(arriving_now(hot, odd))
    assert (outcome.failed, sorted(a["rule"] for a in aws.alerts())) == (set(), ["anomaly", "threshold_high"])


def test_an_alert_sns_took_is_done_even_if_its_claim_is_not_marked(aws: MotoAws) -> None:
    """Failing the record after SNS took its alert would publish it again once the claim's lease
    passed: the record is done, and a copy redelivered meanwhile is suppressed by the live claim."""
    hot = json.dumps(make_message(msg_id=1, readings={"temperature": (60.0, "C")}))
    aws.dynamodb.fail("UpdateItem", "InternalServerError", UpdateExpression="SET published = :yes")
    pipeline = aws.pipeline()
    outcome = pipeline.process(arriving_now(("a", hot)))
    assert (outcome.failed, outcome.alerts, len(aws.alerts())) == (set(), 1, 1)
    outcome = pipeline.process(arriving_now(("b", hot)))
    assert (outcome.alerts, outcome.alerts_suppressed, len(aws.alerts())) == (0, 1, 1)
