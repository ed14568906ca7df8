"""Value types that flow between the processor's modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RejectReason(StrEnum):
    """Machine-readable reason codes written with every quarantined record."""

    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    TOO_LARGE = "too_large"
    SCHEMA_VIOLATION = "schema_violation"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    UNKNOWN_DEVICE_TYPE = "unknown_device_type"
    UNKNOWN_READING = "unknown_reading"
    UNSUPPORTED_UNIT = "unsupported_unit"
    OUT_OF_RANGE = "out_of_range"
    TIMESTAMP_SKEW = "timestamp_skew"
    BAD_SIGNATURE = "bad_signature"


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
    # (device_id, msg_id): the message's identity, used on every hot-path lookup.
    key: tuple[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.device_id, self.msg_id))


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
