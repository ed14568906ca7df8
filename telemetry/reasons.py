"""Why a message was rejected: the codes the processor writes with every quarantined record, and
what a load run expects for each fault the simulator injects."""

from __future__ import annotations

from enum import StrEnum


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
    # A defect of the processor met this record; kept so it neither blocks its batch nor is lost.
    INTERNAL_ERROR = "internal_error"
