"""In-memory stand-ins for the AWS clients the processor uses, for the in-process benchmark (which
measures the processor's own cost, not an emulator's), and the Lambda event and context shapes.

The unit tests run against moto (tests/unit/moto_aws.py) except for Firehose: moto's PutRecordBatch
enforces none of AWS's limits, so `FakeFirehose` serves the unit tests too. Each double implements
only the calls the benchmark's workload makes, and refuses what AWS refuses of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

from botocore.exceptions import ClientError

from processor.config import Settings, Threshold

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import BatchWriteItemInputTypeDef, UpdateItemInputTypeDef
    from mypy_boto3_firehose.type_defs import PutRecordBatchInputTypeDef
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef
    from mypy_boto3_secretsmanager.type_defs import GetSecretValueRequestTypeDef
    from mypy_boto3_sns.type_defs import PublishInputTypeDef

SIGNING_KEY = b"unit-test-signing-key"
ARCHIVE_STREAM = "archive"


def client_error(code: str, operation: str, message: str | None = None) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code}}, operation)


# DynamoDB's limit (moto does not enforce it either), written out rather than imported from
# processor.store, so a wrong constant there fails against the doubles as it would against AWS.
BATCH_WRITE_MAX_REQUESTS = 25


class FakeDynamoDB:
    """BatchWriteItem within AWS's request limit, keeping nothing: the benchmark reads nothing back.

    UpdateItem refuses: the benchmark's messages raise no alert, so the alert publisher's
    conditional writes never run (an alert fails the run loudly rather than be measured against a
    table that does not evaluate their conditions).
    """

    def batch_write_item(self, **kwargs: Unpack[BatchWriteItemInputTypeDef]) -> dict[str, Any]:
        ((_, requests),) = kwargs["RequestItems"].items()
        if not 1 <= len(requests) <= BATCH_WRITE_MAX_REQUESTS:
            raise client_error("ValidationException", "BatchWriteItem", "1 to 25 write requests per call")
        return {"UnprocessedItems": {}}

    def update_item(self, **kwargs: Unpack[UpdateItemInputTypeDef]) -> dict[str, Any]:
        raise NotImplementedError(f"the benchmark's workload raises no alert; UpdateItem on {kwargs['TableName']}")


# Firehose's own limits, written out here rather than imported from processor.archive, so a wrong
# constant there fails against the fake as it would against AWS.
_FIREHOSE_MAX_BATCH_RECORDS = 500
_FIREHOSE_MAX_RECORD_BYTES = 1_024_000
_FIREHOSE_MAX_BATCH_BYTES = 4 * 1024 * 1024


def _blob(data: object) -> bytes:
    """A record's bytes: the processor sends bytes, never the file objects boto3 would also read."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"record data must be bytes, not {type(data).__name__}")
    return bytes(data)


@dataclass
class FakeFirehose:
    """PutRecordBatch to its one delivery stream that refuses a whole call over AWS's limits, or to
    another stream, with AWS's error codes, and otherwise stores every record (the first
    `fail_first` are reported failed, as when throttled)."""

    stream: str = ARCHIVE_STREAM
    records: list[bytes] = field(default_factory=list)
    fail_first: int = 0  # records reported failed on the next call(s)
    calls: int = 0

    def put_record_batch(self, **kwargs: Unpack[PutRecordBatchInputTypeDef]) -> dict[str, Any]:
        self.calls += 1
        stream, records = kwargs["DeliveryStreamName"], [_blob(record["Data"]) for record in kwargs["Records"]]
        if stream != self.stream:
            raise client_error("ResourceNotFoundException", "PutRecordBatch", f"{stream} not found")
        sizes = [len(data) for data in records]
        if not 1 <= len(records) <= _FIREHOSE_MAX_BATCH_RECORDS or max(sizes) > _FIREHOSE_MAX_RECORD_BYTES:
            raise client_error("ValidationException", "PutRecordBatch", "records or a record's data too long")
        if sum(sizes) > _FIREHOSE_MAX_BATCH_BYTES:
            raise client_error("InvalidArgumentException", "PutRecordBatch", "Records size exceeds 4 MB limit")
        responses = []
        for data in records:
            if self.fail_first:
                self.fail_first -= 1
                responses.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"})
            else:
                self.records.append(data)
                responses.append({"RecordId": str(len(self.records))})
        failed = sum(1 for r in responses if "ErrorCode" in r)
        return {"FailedPutCount": failed, "RequestResponses": responses}

    def lines(self) -> list[bytes]:
        return [line for data in self.records for line in data.splitlines()]


class FakeSecrets:
    """The signing secret as created and never rotated, for the benchmark: AWSCURRENT holds
    `SIGNING_KEY` and there is no AWSPREVIOUS, as Secrets Manager answers."""

    def get_secret_value(self, **kwargs: Unpack[GetSecretValueRequestTypeDef]) -> dict[str, Any]:
        if kwargs.get("VersionStage", "AWSCURRENT") != "AWSCURRENT":
            raise client_error("ResourceNotFoundException", "GetSecretValue")
        return {"SecretString": SIGNING_KEY.decode()}


class UnusedBucket:
    """The quarantine bucket of a workload that rejects nothing: a PutObject fails the run loudly."""

    def put_object(self, **kwargs: Unpack[PutObjectRequestTypeDef]) -> dict[str, Any]:
        raise NotImplementedError(f"the benchmark's workload quarantines nothing; PutObject {kwargs['Key']}")


class UnusedTopic:
    """The alerts topic of a workload that raises no alert: a Publish fails the run loudly."""

    def publish(self, **kwargs: Unpack[PublishInputTypeDef]) -> dict[str, Any]:
        raise NotImplementedError(f"the benchmark's workload raises no alert; Publish {kwargs['Message']}")


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
    """Processor settings for in-process runs: the benchmark's doubles, and the unit tests' moto
    account, which creates what they name."""
    return Settings(
        telemetry_table="telemetry",
        alert_state_table="alert-state",
        archive_stream=ARCHIVE_STREAM,
        archive_bucket="bucket",
        alerts_topic_arn="arn:aws:sns:us-east-1:000000000000:alerts",
        signing_secret_arn="arn:secret",
        thresholds=thresholds or {},
        alert_cooldown_seconds=300,
        max_clock_skew_seconds=300,
        telemetry_ttl_days=30,
    )
