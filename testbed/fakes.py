"""In-memory stand-ins for the AWS clients the processor uses: unit tests and the in-process benchmark.

They implement only the calls and response shapes the processor relies on; the end-to-end tests
run the same code against the real emulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from processor.config import Settings, Threshold

SIGNING_KEY = b"unit-test-signing-key"


def client_error(code: str, operation: str, message: str | None = None) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code}}, operation)


# (UpdateExpression, ConditionExpression) of the alert publisher's writes, the only ones FakeDynamoDB
# evaluates. Copied, not imported from processor.alerts: an edited expression must fail against the
# fake, which evaluates exactly these (tests/unit/test_alerts.py checks the real semantics with moto).
_ALERT_CLAIM = (
    "SET last_ts = :ts, last_msg = :msg, published = :no, lease_until = :lease, expires_at = :exp",
    "attribute_not_exists(pk) OR last_ts <= :cutoff OR (last_msg = :msg AND published = :no"
    " AND (attribute_not_exists(lease_until) OR lease_until < :now))",
)
_ALERT_RELEASE = ("SET lease_until = :zero", "last_msg = :msg AND published = :no")
_ALERT_PUBLISHED = ("SET published = :yes", "last_msg = :msg")


@dataclass
class FakeDynamoDB:
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    alert_state: dict[str, dict[str, Any]] = field(default_factory=dict)
    unprocess_first: int = 0  # items left unprocessed on the next call(s)
    throttle_calls: int = 0  # whole calls that raise ThrottlingException
    batch_calls: int = 0

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        self.batch_calls += 1
        if self.throttle_calls:
            self.throttle_calls -= 1
            raise client_error("ThrottlingException", "BatchWriteItem")
        ((table, requests),) = RequestItems.items()
        assert len(requests) <= 25
        unprocessed = requests[: self.unprocess_first]
        self.unprocess_first = max(0, self.unprocess_first - len(unprocessed))
        for request in requests[len(unprocessed) :]:
            item = request["PutRequest"]["Item"]
            self.items[(item["device_id"]["S"], item["sk"]["S"])] = item
        return {"UnprocessedItems": {table: unprocessed} if unprocessed else {}}

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        """The alert publisher's three conditional writes, evaluated as DynamoDB would; any other
        expression is refused, so a changed condition fails here instead of being ignored."""
        expressions = (kwargs["UpdateExpression"], kwargs["ConditionExpression"])
        pk = kwargs["Key"]["pk"]["S"]
        values = kwargs["ExpressionAttributeValues"]
        current = self.alert_state.get(pk)
        same_unpublished = (
            current is not None and current["last_msg"] == values[":msg"]["S"] and not current["published"]
        )
        if expressions == _ALERT_CLAIM:
            allowed = (
                current is None
                or int(current["last_ts"]) <= int(values[":cutoff"]["N"])
                or (same_unpublished and current["lease_until"] < int(values[":now"]["N"]))
            )
            if not allowed:
                raise client_error("ConditionalCheckFailedException", "UpdateItem")
            self.alert_state[pk] = {
                "last_ts": values[":ts"]["N"],
                "last_msg": values[":msg"]["S"],
                "published": False,
                "lease_until": int(values[":lease"]["N"]),
            }
        elif expressions == _ALERT_RELEASE:
            if not same_unpublished:
                raise client_error("ConditionalCheckFailedException", "UpdateItem")
            current["lease_until"] = 0  # type: ignore[index]
        elif expressions == _ALERT_PUBLISHED:
            if current is None or current["last_msg"] != values[":msg"]["S"]:
                raise client_error("ConditionalCheckFailedException", "UpdateItem")
            current["published"] = True
        else:
            raise NotImplementedError(f"FakeDynamoDB cannot evaluate {expressions}: test it against moto")
        return {}


# Firehose's own limits, written out here rather than imported from processor.archive, so a wrong
# constant there fails against the fake as it would against AWS.
_FIREHOSE_MAX_BATCH_RECORDS = 500
_FIREHOSE_MAX_RECORD_BYTES = 1_024_000
_FIREHOSE_MAX_BATCH_BYTES = 4 * 1024 * 1024


@dataclass
class FakeFirehose:
    """PutRecordBatch that refuses a whole call over AWS's limits, with AWS's error codes, and
    otherwise stores every record (the first `fail_first` are reported failed, as when throttled)."""

    records: list[bytes] = field(default_factory=list)
    fail_first: int = 0  # records reported failed on the next call(s)
    calls: int = 0

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> dict[str, Any]:
        self.calls += 1
        sizes = [len(record["Data"]) for record in Records]
        if not 1 <= len(Records) <= _FIREHOSE_MAX_BATCH_RECORDS or max(sizes) > _FIREHOSE_MAX_RECORD_BYTES:
            raise client_error("ValidationException", "PutRecordBatch", "records or a record's data too long")
        if sum(sizes) > _FIREHOSE_MAX_BATCH_BYTES:
            raise client_error("InvalidArgumentException", "PutRecordBatch", "Records size exceeds 4 MB limit")
        responses = []
        for record in Records:
            if self.fail_first:
                self.fail_first -= 1
                responses.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"})
            else:
                self.records.append(record["Data"])
                responses.append({"RecordId": str(len(self.records))})
        failed = sum(1 for r in responses if "ErrorCode" in r)
        return {"FailedPutCount": failed, "RequestResponses": responses}

    def lines(self) -> list[bytes]:
        return [line for data in self.records for line in data.splitlines()]


@dataclass
class FakeS3:
    objects: dict[str, bytes] = field(default_factory=dict)
    fail: bool = False

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:
        if self.fail:
            raise client_error("SlowDown", "PutObject")
        self.objects[Key] = Body
        return {}


@dataclass
class FakeSNS:
    published: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        if self.fail_next:
            self.fail_next -= 1
            raise client_error("Throttling", "Publish")
        self.published.append(kwargs)
        return {"MessageId": str(len(self.published))}


@dataclass
class FakeSecrets:
    current: bytes = SIGNING_KEY
    previous: bytes | None = None
    calls: int = 0

    def get_secret_value(self, SecretId: str, VersionStage: str) -> dict[str, Any]:
        self.calls += 1
        if VersionStage == "AWSCURRENT":
            return {"SecretString": self.current.decode()}
        if self.previous is None:
            raise client_error("ResourceNotFoundException", "GetSecretValue")
        return {"SecretString": self.previous.decode()}


@dataclass
class FakeLambdaContext:
    """The attributes of a Lambda context that Powertools and the handler read."""

    function_name: str = "processor"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:processor"
    aws_request_id: str = "req-1"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def sqs_event(bodies: Sequence[str], first: int = 0) -> dict[str, Any]:
    """An SQS event as the event source mapping delivers it; record i has messageId `m<first + i>`."""
    return {
        "Records": [
            {
                "messageId": f"m{first + i}",
                "receiptHandle": f"h{first + i}",
                "body": body,
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:ingest",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def fake_settings(thresholds: dict[str, dict[str, Threshold]] | None = None) -> Settings:
    """Processor settings naming no real resource, for runs against the fakes above."""
    return Settings(
        telemetry_table="telemetry",
        alert_state_table="alert-state",
        archive_stream="archive",
        archive_bucket="bucket",
        alerts_topic_arn="arn:aws:sns:us-east-1:000000000000:alerts",
        signing_secret_arn="arn:secret",
        thresholds=thresholds or {},
        alert_cooldown_seconds=300,
        max_clock_skew_seconds=300,
        telemetry_ttl_days=30,
    )
