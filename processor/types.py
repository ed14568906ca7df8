"""Value types that flow between the processor's modules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Unpack

from telemetry.reasons import RejectReason
from telemetry.schema import sort_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import BatchWriteItemInputTypeDef, UpdateItemInputTypeDef
    from mypy_boto3_firehose.type_defs import PutRecordBatchInputTypeDef
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef
    from mypy_boto3_secretsmanager.type_defs import GetSecretValueRequestTypeDef
    from mypy_boto3_sns.type_defs import PublishInputTypeDef

# (device_id, sk): the key of a stored reading.
ItemKey = tuple[str, str]


class InboundRecord(NamedTuple):
    """One record of a batch. `arrival_ms` is when the message reached the queue (SQS SentTimestamp):
    clock skew is judged against it, so a redelivery after a stall is not mistaken for a skewed clock.
    """

    record_id: str
    body: str
    arrival_ms: int


@dataclass(frozen=True)
class Telemetry:
    """A validated message, readings normalised to each sensor's canonical unit."""

    device_id: str
    msg_id: int
    ts: int
    device_type: str
    firmware: str
    site: str | None
    readings: dict[str, float]
    raw: dict[str, Any] = field(repr=False)
    body: str = field(repr=False)
    # The signed bytes (every field but `sig`), encoded once: checked against each accepted key.
    canonical: bytes = field(repr=False)
    # The DynamoDB sort key, and (device_id, sk), the stored item's key. Deduplication and the
    # writers' failure reports use it: a reading that reuses a msg_id with another ts is a different item.
    sk: str = field(init=False, repr=False)
    key: ItemKey = field(init=False, repr=False)

    def __post_init__(self) -> None:
        sk = sort_key(self.ts, self.msg_id)
        object.__setattr__(self, "sk", sk)
        object.__setattr__(self, "key", (self.device_id, sk))


@dataclass(frozen=True)
class Rejection:
    """A record that will be quarantined, with the original body exactly as received."""

    record_id: str
    reason: RejectReason
    detail: str
    body: str


@dataclass(frozen=True)
class Alert:
    """An alert raised by a rule for one message."""

    device_id: str
    device_type: str
    msg_id: int
    ts: int
    rule: str
    reading: str
    value: float
    severity: str
    message: str


# The slice of each AWS client the processor calls, with the requests typed as boto3-stubs types
# them: a boto3 client, a moto proxy and a benchmark double all satisfy these, and mypy checks the
# processor's requests against AWS's shapes. Responses stay mappings: the doubles answer with dicts.


class DynamoDBWriter(Protocol):
    def batch_write_item(self, **kwargs: Unpack[BatchWriteItemInputTypeDef]) -> Mapping[str, Any]: ...

    def update_item(self, **kwargs: Unpack[UpdateItemInputTypeDef]) -> Mapping[str, Any]: ...


class FirehoseWriter(Protocol):
    def put_record_batch(self, **kwargs: Unpack[PutRecordBatchInputTypeDef]) -> Mapping[str, Any]: ...


class ObjectWriter(Protocol):
    def put_object(self, **kwargs: Unpack[PutObjectRequestTypeDef]) -> Mapping[str, Any]: ...


class Publisher(Protocol):
    def publish(self, **kwargs: Unpack[PublishInputTypeDef]) -> Mapping[str, Any]: ...


class SecretReader(Protocol):
    def get_secret_value(self, **kwargs: Unpack[GetSecretValueRequestTypeDef]) -> Mapping[str, Any]: ...
