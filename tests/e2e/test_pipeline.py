"""Messages through the deployed pipeline on the embedded emulator: ingest queue -> stores."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Unpack

import pytest
from botocore.exceptions import ClientError
from mypy_boto3_dynamodb.type_defs import BatchWriteItemInputTypeDef
from mypy_boto3_firehose.type_defs import PutRecordBatchInputTypeDef

from processor.config import Settings
from processor.pipeline import Clients, Pipeline
from processor.types import InboundRecord
from telemetry import new_message
from testbed.lifecycle.stack import Stack
from testbed.operate.iam_check import IamCheck, without
from testbed.stores import Stores, wait_for
from testbed.testing import denied_calls
from tests.e2e.conftest import as_json, assert_only_known_drift, needs_kept_state, now_ms, send

pytestmark = pytest.mark.e2e
WAIT_S = 60.0


def device() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


def message(key: bytes, device_id: str, msg_id: int = 1, temperature: float = 21.5, **kw: Any) -> dict[str, Any]:
    return new_message(
        device_id=device_id,
        msg_id=msg_id,
        ts=kw.pop("ts", now_ms()),
        device_type="environmental",
        firmware="1.0.0",
        readings={"temperature": (temperature, "C"), "humidity": (45.0, "%")},
        key=kw.pop("sign_with", key),
    )


def quarantined_for(stores: Stores, marker: str) -> list[dict[str, Any]]:
    return [q for q in stores.quarantined() if marker in q["body"]]


def test_valid_message_is_stored_and_archived(stack: Stack, stores: Stores, signing_key: bytes) -> None:
    dev = device()
    msg = message(signing_key, dev, temperature=71.6)
    send(stack, [as_json(msg)])
    item = wait_for("the reading", lambda: stores.reading(dev, msg["ts"], 1), WAIT_S)
    assert item.device_type == "environmental"
    assert item.readings["temperature"] == 71.6
    assert item.stored_at_ms >= msg["ts"]
    assert item.expires_at_s > msg["ts"] // 1000
    archived = wait_for(
        "the archived line", lambda: [m for m in stores.archived_messages() if m["device_id"] == dev], WAIT_S
    )
    assert archived == [msg], "the raw message is archived exactly as sent, once"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("malformed", "invalid_json"),
        ("forged", "bad_signature"),
        ("out_of_range", "out_of_range"),
        ("missing_field", "schema_violation"),
    ],
)
def test_bad_records_are_quarantined_with_their_reason(
    stack: Stack, stores: Stores, signing_key: bytes, case: str, reason: str
) -> None:
    dev = device()
    good = message(signing_key, dev)
    bodies = {
        "malformed": '{"device_id": "' + dev + '", ',
        "forged": as_json(message(signing_key, dev, sign_with=b"attacker")),
        "out_of_range": as_json(message(signing_key, dev, temperature=400.0)),
        "missing_field": as_json({k: v for k, v in good.items() if k != "msg_id"}),
    }
    send(stack, [bodies[case]])
    (doc,) = wait_for(f"the {case} record in the quarantine", lambda: quarantined_for(stores, dev), WAIT_S)
    assert doc["reason"] == reason
    assert doc["body"] == bodies[case], "the original body is kept"
    assert doc["key"].startswith(f"quarantine/reason={reason}/")
    assert stores.readings(dev) == []


def test_duplicates_are_stored_once_and_alerted_once(stack: Stack, stores: Stores, signing_key: bytes) -> None:
    dev = device()
    hot = as_json(message(signing_key, dev, temperature=60.0))
    send(stack, [hot, hot])
    send(stack, [hot])
    wait_for("the reading", lambda: stores.readings(dev), WAIT_S)
    alerts = wait_for("the alert", lambda: [a for a in stores.drain_alerts() if a["device_id"] == dev], WAIT_S)
    alerts += [a for a in stores.drain_alerts(wait_s=3) if a["device_id"] == dev]
    assert len(stores.readings(dev)) == 1
    assert len(alerts) == 1
    assert alerts[0]["rule"] == "threshold_high" and alerts[0]["severity"] == "critical"
    attributes = {k: v["Value"] for k, v in alerts[0]["attributes"].items()}
    assert attributes == {"severity": "critical", "device_type": "environmental", "rule": "threshold_high"}


def test_cooldown_holds_for_a_stuck_high_sensor(stack: Stack, stores: Stores, signing_key: bytes) -> None:
    dev = device()
    start = now_ms() - 20_000
    send(
        stack, [as_json(message(signing_key, dev, msg_id=i, temperature=70.0, ts=start + i * 1000)) for i in range(20)]
    )
    wait_for("20 readings", lambda: len(stores.readings(dev)) == 20, WAIT_S)
    alerts = [a for a in stores.drain_alerts(wait_s=3) if a["device_id"] == dev]
    assert [a["rule"] for a in alerts] == ["threshold_high"]


def test_a_conditional_write_is_atomic_as_dynamodbs(stack: Stack) -> None:
    """The alert cooldown rests on it: of claims racing for one key, exactly one wins (moto alone,
    LocalStack's DynamoDB here, checks a condition and writes in two steps)."""
    table = stack.outputs().alert_state_table_name
    racers, rounds = 8, 25
    clients = [stack.client("dynamodb") for _ in range(racers)]
    barrier = threading.Barrier(racers)
    winners: dict[str, list[int]] = {}

    def claim(racer: int, key: str) -> None:
        barrier.wait()
        try:
            clients[racer].update_item(
                TableName=table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET last_msg = :me",
                ConditionExpression="attribute_not_exists(pk)",
                ExpressionAttributeValues={":me": {"S": str(racer)}},
            )
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException", exc
            return
        winners.setdefault(key, []).append(racer)

    keys = [f"race-{uuid.uuid4().hex[:10]}" for _ in range(rounds)]
    for key in keys:
        threads = [threading.Thread(target=claim, args=(racer, key)) for racer in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert {key: len(winners.get(key, [])) for key in keys} == dict.fromkeys(keys, 1)
    for key in keys:
        item = clients[0].get_item(TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True)["Item"]
        assert item["last_msg"] == {"S": str(winners[key][0])}, "the winner's write is the one kept"


def test_mixed_batch_every_record_accounted_for(stack: Stack, stores: Stores, signing_key: bytes) -> None:
    dev = device()
    valid = [as_json(message(signing_key, dev, msg_id=i)) for i in range(1, 6)]
    bad = ['["' + dev + '"]', as_json(message(signing_key, dev, msg_id=99, sign_with=b"x"))]
    send(stack, valid + bad)
    wait_for("5 readings", lambda: len(stores.readings(dev)) == 5, WAIT_S)
    docs = wait_for("2 quarantined", lambda: [d for d in [quarantined_for(stores, dev)] if len(d) == 2], WAIT_S)[0]
    assert sorted(d["reason"] for d in docs) == ["bad_signature", "schema_violation"]
    # other tests dead-letter on purpose: look for this test's device only (messages stay for them)
    sqs = stack.client("sqs")
    response = sqs.receive_message(
        QueueUrl=stack.outputs().dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1
    )
    in_dlq = response.get("Messages", [])
    assert not [m for m in in_dlq if dev in m["Body"]], "rejected records never reach the DLQ"


class FlakyDynamoDB:
    """The real client, but the first calls leave half their items unprocessed (as throttling does)."""

    def __init__(self, real: Any, flaky_calls: int) -> None:
        self.real, self.flaky_calls = real, flaky_calls

    def batch_write_item(self, **kwargs: Unpack[BatchWriteItemInputTypeDef]) -> dict[str, Any]:
        if not self.flaky_calls:
            return dict(self.real.batch_write_item(**kwargs))
        self.flaky_calls -= 1
        ((table, requests),) = kwargs["RequestItems"].items()
        half = len(requests) // 2
        self.real.batch_write_item(RequestItems={table: requests[:half]})
        return {"UnprocessedItems": {table: requests[half:]}}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class FlakyFirehose:
    """The real client, but the first call fails every other record (FailedPutCount)."""

    def __init__(self, real: Any, flaky_calls: int) -> None:
        self.real, self.flaky_calls = real, flaky_calls

    def put_record_batch(self, **kwargs: Unpack[PutRecordBatchInputTypeDef]) -> dict[str, Any]:
        stream, records = kwargs["DeliveryStreamName"], list(kwargs["Records"])
        if not self.flaky_calls or len(records) < 2:
            return dict(self.real.put_record_batch(DeliveryStreamName=stream, Records=records))
        self.flaky_calls -= 1
        self.real.put_record_batch(DeliveryStreamName=stream, Records=records[::2])
        responses = [
            {"RecordId": "ok"} if i % 2 == 0 else {"ErrorCode": "ServiceUnavailableException"}
            for i in range(len(records))
        ]
        return {"FailedPutCount": len(records) // 2, "RequestResponses": responses}


def test_throttled_writes_lose_and_duplicate_nothing(
    stack: Stack, stores: Stores, signing_key: bytes, deployed_settings: Settings
) -> None:
    devices = [device() for _ in range(4)]
    bodies = [as_json(message(signing_key, devices[i % 4], msg_id=i)) for i in range(300)]
    flaky_dynamodb = FlakyDynamoDB(stack.client("dynamodb"), flaky_calls=5)
    flaky_firehose = FlakyFirehose(stack.client("firehose"), flaky_calls=1)
    clients = Clients(
        dynamodb=flaky_dynamodb,
        firehose=flaky_firehose,
        s3=stack.client("s3"),
        sns=stack.client("sns"),
        secretsmanager=stack.client("secretsmanager"),
    )
    # Small records so the batch spans several Firehose records and the flaky call matters.
    pipeline = Pipeline(deployed_settings, clients, sleep=lambda _: None, max_archive_record_bytes=4096)
    arrived = now_ms()
    outcome = pipeline.process([InboundRecord(f"r{i}", b, arrived) for i, b in enumerate(bodies)])
    assert flaky_firehose.flaky_calls == 0 and flaky_dynamodb.flaky_calls == 0, "the failures were injected"
    assert outcome.failed == set() and outcome.accepted == 300
    stored = sorted(item.msg_id for dev in devices for item in stores.readings(dev))
    assert stored == list(range(300))
    archived = sorted(m["msg_id"] for m in stores.archived_messages() if m["device_id"] in devices)
    assert archived == list(range(300)), "every message archived exactly once"


def test_second_plan_shows_only_known_emulator_drift(stack: Stack) -> None:
    assert_only_known_drift(stack)


def test_state_survives_down_and_up(stack: Stack, stores: Stores, signing_key: bytes) -> None:
    needs_kept_state(stack)
    dev = device()
    msg = message(signing_key, dev)
    send(stack, [json.dumps(msg)])
    wait_for("the reading", lambda: stores.reading(dev, msg["ts"], 1), WAIT_S)
    stack.down()
    assert not stack.backend.healthy()
    assert stack.up() is not None
    assert stores.reading(dev, msg["ts"], 1) is not None, "DynamoDB state was saved on SIGTERM"


@pytest.mark.iam_denial
def test_a_permission_missing_from_the_processors_role_is_denied_and_named(
    stack: Stack, stores: Stores, signing_key: bytes
) -> None:
    """IAM is enforced on the test stack: without sns:Publish the alert is refused, and the check
    every stack test runs afterwards names the action and the topic."""
    if not stack.backend.iam_enforced:
        pytest.skip("the backend does not evaluate IAM policies")
    iam = stack.client("iam")
    role = f"iot-pipeline-{stack.outputs().environment_suffix}-processor"
    original = iam.get_role_policy(RoleName=role, PolicyName="processor")["PolicyDocument"]
    document = json.loads(original) if isinstance(original, str) else original
    variant = without(document, "sns:Publish")
    since = now_ms() - 1000
    dev = device()
    check = IamCheck(stack)
    iam.put_role_policy(RoleName=role, PolicyName="processor", PolicyDocument=json.dumps(variant))
    try:
        check.fresh_worker("denial-test")  # the emulator resolves a worker's role session when it starts
        send(stack, [as_json(message(signing_key, dev, temperature=80.0))])
        denied = wait_for("the denial in the processor's log", lambda: denied_calls(stack, since) or None, 90)
    finally:
        iam.put_role_policy(RoleName=role, PolicyName="processor", PolicyDocument=json.dumps(document))
        check.restore_function()
    assert [d for d in denied if d.split(" on ")[0] == "sns:Publish"], denied
    # with the permission back, the redelivered record raises its alert: nothing denied is left in
    # flight to be found by the next test's check
    wait_for(
        "the alert once sns:Publish is back",
        lambda: [a for a in stores.drain_alerts() if a["device_id"] == dev] or None,
        180,
    )
