"""The telemetry message contract (schema v1), shared by the simulator, processor and tests."""

from __future__ import annotations

from telemetry.schema import (
    DEVICE_TYPES,
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    SENSORS,
    DeviceType,
    Sensor,
    canonical_bytes,
    new_message,
    sign,
    signed_payload,
    sort_key,
)

__all__ = [
    "DEVICE_TYPES",
    "MAX_MESSAGE_BYTES",
    "SCHEMA_VERSION",
    "SENSORS",
    "DeviceType",
    "Sensor",
    "canonical_bytes",
    "new_message",
    "sign",
    "signed_payload",
    "sort_key",
]
