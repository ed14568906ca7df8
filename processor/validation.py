"""Parse and validate one record body into a normalised `Telemetry`, or reject it with a reason."""

from __future__ import annotations

import json
import math
from typing import Any

import fastjsonschema

from processor.exceptions import RecordRejected
from processor.types import Telemetry
from telemetry.reasons import RejectReason
from telemetry.schema import (
    DEVICE_TYPES,
    INTEGER_FIELDS,
    JSON_SCHEMA,
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    SENSORS,
    canonical_bytes,
)

_validate_schema = fastjsonschema.compile(JSON_SCHEMA)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse(body: str, *, arrival_ms: int, max_skew_ms: int) -> Telemetry:
    """Turn an SQS body into a `Telemetry`; raise `RecordRejected` for anything unacceptable.

    `ts` must lie within `max_skew_ms` of `arrival_ms`, when the message reached the queue.
    """
    try:
        encoded = body.encode()
    except UnicodeEncodeError as exc:
        raise RecordRejected(RejectReason.INVALID_ENCODING, str(exc)) from exc
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise RecordRejected(RejectReason.TOO_LARGE, f"{len(encoded)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        message = _DECODER.decode(body)
    except (ValueError, RecursionError) as exc:
        raise RecordRejected(RejectReason.INVALID_JSON, str(exc)[:200]) from exc
    if not isinstance(message, dict):
        raise RecordRejected(RejectReason.SCHEMA_VIOLATION, "message is not a JSON object")
    version = message.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise RecordRejected(RejectReason.UNSUPPORTED_SCHEMA_VERSION, f"schema_version {version!r}")
    try:
        _validate_schema(message)
    except fastjsonschema.JsonSchemaException as exc:
        raise RecordRejected(RejectReason.SCHEMA_VIOLATION, str(exc)[:200]) from exc
    for name in INTEGER_FIELDS:
        if name in message and type(message[name]) is not int:
            raise RecordRejected(RejectReason.SCHEMA_VIOLATION, f"{name} {message[name]!r} is not an integer")

    device_type = DEVICE_TYPES.get(message["device_type"])
    if device_type is None:
        raise RecordRejected(
            RejectReason.UNKNOWN_DEVICE_TYPE,
            f"{message['device_type']!r} not in {sorted(DEVICE_TYPES)}",
        )
    ts = message["ts"]
    if abs(ts - arrival_ms) > max_skew_ms:
        raise RecordRejected(
            RejectReason.TIMESTAMP_SKEW, f"ts {ts} is {(ts - arrival_ms) / 1000:+.0f} s from its arrival"
        )
    readings = normalise_readings(device_type.sensors, message["readings"])
    try:
        # A JSON escape such as "\ud800" decodes to a lone surrogate, which has no UTF-8 form.
        canonical = canonical_bytes(message)
    except UnicodeEncodeError as exc:
        raise RecordRejected(RejectReason.INVALID_ENCODING, str(exc)[:200]) from exc

    return Telemetry(
        device_id=message["device_id"],
        msg_id=message["msg_id"],
        ts=ts,
        device_type=device_type.name,
        firmware=message["firmware"],
        site=message.get("site"),
        readings=readings,
        raw=message,
        body=body,
        canonical=canonical,
    )


def normalise_readings(allowed: tuple[str, ...], readings: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Convert every reading to its canonical unit and check what the sensor can report."""
    normalised: dict[str, float] = {}
    for name, reading in readings.items():
        if name not in allowed:
            raise RecordRejected(RejectReason.UNKNOWN_READING, f"{name!r} not in {list(allowed)}")
        sensor = SENSORS[name]
        value, unit = reading["value"], reading["unit"]
        if unit not in sensor.units:
            raise RecordRejected(RejectReason.UNSUPPORTED_UNIT, f"{name}: {unit!r} not in {list(sensor.units)}")
        if (sensor.unit == "bool") != isinstance(value, bool):
            raise RecordRejected(RejectReason.SCHEMA_VIOLATION, f"{name}: {value!r} has the wrong type")
        try:
            canonical = sensor.to_canonical(float(value), unit)
        except OverflowError:  # an integer of hundreds of digits has no float
            canonical = math.inf
        if not math.isfinite(canonical) or not sensor.minimum <= canonical <= sensor.maximum:
            raise RecordRejected(
                RejectReason.OUT_OF_RANGE,
                f"{name}: {canonical:g} {sensor.unit} outside [{sensor.minimum:g}, {sensor.maximum:g}]",
            )
        normalised[name] = canonical
    return normalised
