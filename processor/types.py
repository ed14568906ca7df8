"""Value types that flow between the processor's modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from telemetry.reasons import RejectReason
from telemetry.schema import sort_key

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
