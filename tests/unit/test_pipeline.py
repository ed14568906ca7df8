"""A batch through the pipeline and the handler: every record stored, quarantined or retried."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from processor import handler
from processor.config import Settings
from processor.pipeline import Clients, Pipeline
from processor.types import RejectReason
from testbed.fakes import (
    FakeDynamoDB,
    FakeFirehose,
    FakeLambdaContext,
    FakeS3,
    FakeSecrets,
    FakeSNS,
    client_error,
    sqs_event,
)
from tests.conftest import make_message


@dataclass
class Fakes:
    dynamodb: FakeDynamoDB
    firehose: FakeFirehose
    s3: FakeS3
    sns: FakeSNS
    secrets: FakeSecrets

    def pipeline(self, settings: Settings) -> Pipeline:
        clients = Clients(self.dynamodb, self.firehose, self.s3, self.sns, self.secrets)
        return Pipeline(settings, clients, sleep=lambda _: None)


@pytest.fixture
def fakes() -> Fakes:
    return Fakes(FakeDynamoDB(), FakeFirehose(), FakeS3(), FakeSNS(), FakeSecrets())


def invoke(fakes: Fakes, settings: Settings, bodies: list[str]) -> dict[str, Any]:
    handler._pipeline = fakes.pipeline(settings)
    try:
        return dict(handler.lambda_handler(sqs_event(bodies), FakeLambdaContext()))
    finally:
        handler._pipeline = None


def failed_ids(response: dict[str, Any]) -> set[str]:
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}


def test_mixed_batch(fakes: Fakes, settings: Settings) -> None:
    valid = json.dumps(make_message(msg_id=1))
    hot = json.dumps(make_message(msg_id=2, readings={"temperature": (60.0, "C")}))
    forged = json.dumps(make_message(msg_id=3, key=b"forged"))
    bodies = [valid, hot, forged, "{oops", valid]
    response = invoke(fakes, settings, bodies)
    assert failed_ids(response) == set()
    assert len(fakes.dynamodb.items) == 2
    assert len(fakes.firehose.lines()) == 2 and len(fakes.firehose.records) == 1
    reasons = sorted(json.loads(b)["reason"] for b in fakes.s3.objects.values())
    assert reasons == ["bad_signature", "invalid_json"]
    assert [json.loads(p["Message"])["msg_id"] for p in fakes.sns.published] == [2]


def test_duplicates_in_a_batch_are_stored_and_alerted_once(fakes: Fakes, settings: Settings) -> None:
    hot = json.dumps(make_message(msg_id=7, readings={"temperature": (60.0, "C")}))
    outcome = fakes.pipeline(settings).process([("a", hot), ("b", hot), ("c", hot)])
    assert (outcome.accepted, outcome.duplicates, outcome.alerts) == (1, 2, 1)
    assert len(fakes.dynamodb.items) == 1 and len(fakes.firehose.lines()) == 1


def test_redelivery_across_batches_stores_and_alerts_once(fakes: Fakes, settings: Settings) -> None:
    hot = json.dumps(make_message(msg_id=7, readings={"temperature": (60.0, "C")}))
    pipeline = fakes.pipeline(settings)
    pipeline.process([("a", hot)])
    pipeline.process([("a", hot)])
    assert len(fakes.dynamodb.items) == 1
    assert len(fakes.sns.published) == 1


def test_transient_store_failure_retries_just_those_records(fakes: Fakes, settings: Settings) -> None:
    fakes.dynamodb.unprocess_first = 10**6
    bodies = [json.dumps(make_message(msg_id=i)) for i in range(3)] + ["not json"]
    response = invoke(fakes, settings, bodies)
    assert failed_ids(response) == {"m0", "m1", "m2"}, "the poison record is quarantined, not retried"
    assert fakes.firehose.records == [], "nothing is archived before it is stored"
    fakes.dynamodb.unprocess_first = 0
    assert failed_ids(invoke(fakes, settings, bodies[:3])) == set()
    assert len(fakes.dynamodb.items) == 3 and len(fakes.firehose.lines()) == 3


def test_partial_failures_lose_and_duplicate_nothing(fakes: Fakes, settings: Settings) -> None:
    fakes.dynamodb.unprocess_first, fakes.dynamodb.throttle_calls, fakes.firehose.fail_first = 7, 1, 1
    bodies = [json.dumps(make_message(device_id=f"d{i % 5}", msg_id=i)) for i in range(100)]
    assert failed_ids(invoke(fakes, settings, bodies)) == set()
    assert len(fakes.dynamodb.items) == 100
    lines = [json.loads(line)["msg_id"] for line in fakes.firehose.lines()]
    assert sorted(lines) == list(range(100))


def test_archive_failure_retries_records_without_losing_them(fakes: Fakes, settings: Settings) -> None:
    fakes.firehose.fail_first = 10**6
    bodies = [json.dumps(make_message(msg_id=i)) for i in range(2)]
    assert failed_ids(invoke(fakes, settings, [*bodies, "{"])) == {"m0", "m1"}
    fakes.firehose.fail_first = 0
    assert failed_ids(invoke(fakes, settings, bodies)) == set()
    assert len(fakes.dynamodb.items) == 2 and len(fakes.firehose.lines()) == 2


def test_quarantine_failure_retries_the_rejected_record(fakes: Fakes, settings: Settings) -> None:
    fakes.s3.fail = True
    assert failed_ids(invoke(fakes, settings, ["{", json.dumps(make_message())])) == {"m0"}


def test_secret_outage_defers_the_whole_batch(fakes: Fakes, settings: Settings) -> None:
    class Down:
        def get_secret_value(self, **_: object) -> None:
            raise client_error("InternalServiceError", "GetSecretValue")

    fakes.secrets = Down()  # type: ignore[assignment]
    with pytest.raises(BatchProcessingError):
        invoke(fakes, settings, [json.dumps(make_message())])
    assert fakes.dynamodb.items == {}


def test_lag_is_measured_from_device_time(fakes: Fakes, settings: Settings) -> None:
    ts = int(time.time() * 1000) - 2000
    outcome = fakes.pipeline(settings).process([("a", json.dumps(make_message(ts=ts)))])
    assert 2000 <= outcome.lag_ms[0] < 10_000


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=12))
def test_any_bytes_end_stored_or_quarantined_and_the_handler_never_raises(
    fakes: Fakes, settings: Settings, payloads: list[bytes]
) -> None:
    fakes.s3.objects.clear()
    bodies = [p.decode("utf-8", "surrogateescape") for p in payloads]
    response = invoke(fakes, settings, bodies)
    assert failed_ids(response) == set()
    quarantined = {json.loads(doc)["record_id"]: json.loads(doc)["reason"] for doc in fakes.s3.objects.values()}
    assert set(quarantined) == {f"m{i}" for i in range(len(bodies))}
    assert set(quarantined.values()) <= {r.value for r in RejectReason}


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["valid", "mutated", "junk"]), min_size=1, max_size=10), st.randoms())
def test_mixed_records_each_end_stored_or_quarantined(
    fakes: Fakes, settings: Settings, kinds: list[str], rnd: Any
) -> None:
    fakes.s3.objects.clear()
    fakes.dynamodb.items.clear()
    bodies = []
    for i, kind in enumerate(kinds):
        body = json.dumps(make_message(device_id=f"p{i}", msg_id=i))
        if kind == "mutated":
            pos = rnd.randrange(len(body))
            body = body[:pos] + rnd.choice('x"{}0 ') + body[pos + 1 :]
        elif kind == "junk":
            body = "".join(rnd.choice('ab{}[]",:0') for _ in range(rnd.randrange(40)))
        bodies.append(body)
    assert failed_ids(invoke(fakes, settings, bodies)) == set()
    stored = {k[0] for k in fakes.dynamodb.items}
    quarantined = {json.loads(doc)["record_id"] for doc in fakes.s3.objects.values()}
    for i in range(len(bodies)):
        assert (f"p{i}" in stored) != (f"m{i}" in quarantined), f"record {i} must end in exactly one place"
