"""Telemetry message schema v1: fields, sensor catalog, units, canonical form and signature.

A message as a device publishes it::

    {"schema_version": 1, "device_id": "env-0001", "msg_id": 42, "ts": 1764170000000,
     "device_type": "environmental", "firmware": "2.1.0", "site": "plant-a",
     "readings": {"temperature": {"value": 21.4, "unit": "C"}, ...},
     "sig": "<hex HMAC-SHA256 of the canonical form without sig>"}

`msg_id` is a per-device sequence number; (device_id, msg_id) identifies a message.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1
# A telemetry message has no reason to be large; AWS IoT allows 128 KB, we allow far less.
MAX_MESSAGE_BYTES = 16 * 1024
MAX_READINGS = 32
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# SQS message attribute: when the message first entered the pipeline (epoch ms). Set by the local
# bridge and kept through the DLQ and a redrive, so clock skew is measured from the first arrival.
ARRIVAL_ATTRIBUTE = "ArrivalTimestamp"


@dataclass(frozen=True)
class Sensor:
    """One reading channel: canonical unit, accepted units and what the hardware can report."""

    unit: str
    minimum: float
    maximum: float
    conversions: Mapping[str, Callable[[float], float]]

    def to_canonical(self, value: float, unit: str) -> float:
        if unit == self.unit:
            return value
        return self.conversions[unit](value)

    @property
    def units(self) -> tuple[str, ...]:
        return (self.unit, *self.conversions)


def _f_to_c(v: float) -> float:
    return (v - 32.0) * 5.0 / 9.0


def _k_to_c(v: float) -> float:
    return v - 273.15


_TEMPERATURE: dict[str, Callable[[float], float]] = {"F": _f_to_c, "K": _k_to_c}

SENSORS: dict[str, Sensor] = {
    "temperature": Sensor("C", -60.0, 150.0, _TEMPERATURE),
    "humidity": Sensor("%", 0.0, 100.0, {}),
    "pressure": Sensor("hPa", 300.0, 1100.0, {"kPa": lambda v: v * 10.0, "Pa": lambda v: v / 100.0}),
    "co2": Sensor("ppm", 0.0, 10000.0, {}),
    "vibration_rms": Sensor("mm/s", 0.0, 100.0, {"in/s": lambda v: v * 25.4}),
    "vibration_peak": Sensor("mm/s", 0.0, 300.0, {"in/s": lambda v: v * 25.4}),
    "bearing_temperature": Sensor("C", -40.0, 200.0, _TEMPERATURE),
    "running": Sensor("bool", 0.0, 1.0, {}),
    "voltage": Sensor("V", 0.0, 500.0, {"mV": lambda v: v / 1000.0}),
    "current": Sensor("A", 0.0, 1000.0, {"mA": lambda v: v / 1000.0}),
    "power_factor": Sensor("1", 0.0, 1.0, {}),
    "energy": Sensor("kWh", 0.0, 1.0e9, {"Wh": lambda v: v / 1000.0}),
    "door_open": Sensor("bool", 0.0, 1.0, {}),
    "latitude": Sensor("deg", -90.0, 90.0, {}),
    "longitude": Sensor("deg", -180.0, 180.0, {}),
    "battery": Sensor("%", 0.0, 100.0, {}),
    "rssi": Sensor("dBm", -130.0, 0.0, {}),
}


@dataclass(frozen=True)
class DeviceType:
    """A kind of device and the readings it may report."""

    name: str
    sensors: tuple[str, ...]


DEVICE_TYPES: dict[str, DeviceType] = {
    t.name: t
    for t in (
        DeviceType("environmental", ("temperature", "humidity", "pressure", "co2", "battery", "rssi")),
        DeviceType(
            "vibration",
            ("vibration_rms", "vibration_peak", "bearing_temperature", "running", "rssi"),
        ),
        DeviceType("power_meter", ("voltage", "current", "power_factor", "energy", "rssi")),
        DeviceType(
            "cold_chain",
            ("temperature", "door_open", "latitude", "longitude", "battery", "rssi"),
        ),
    )
}

JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "device_id", "msg_id", "ts", "device_type", "firmware", "readings", "sig"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"type": "integer"},
        "device_id": {"type": "string", "pattern": DEVICE_ID_PATTERN},
        "msg_id": {"type": "integer", "minimum": 0, "maximum": 9_999_999_999},
        "ts": {"type": "integer", "minimum": 0, "maximum": 9_999_999_999_999},
        "device_type": {"type": "string", "maxLength": 32},
        "firmware": {"type": "string", "minLength": 1, "maxLength": 32},
        "site": {"type": "string", "maxLength": 64},
        "readings": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": MAX_READINGS,
            "additionalProperties": {
                "type": "object",
                "required": ["value", "unit"],
                "additionalProperties": False,
                "properties": {
                    "value": {"type": ["number", "boolean"]},
                    "unit": {"type": "string", "maxLength": 8},
                },
            },
        },
        # A malformed signature is simply one that matches no key (reason bad_signature).
        "sig": {"type": "string", "maxLength": 64},
    },
}
# JSON Schema draft-07 counts 1.0 as an integer; these fields must be JSON integers (`type(v) is int`).
INTEGER_FIELDS = tuple(name for name, spec in JSON_SCHEMA["properties"].items() if spec.get("type") == "integer")


_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _canonical_number(value: Any) -> Any:
    """Integral floats become ints so 21.0 and 21 sign alike, whoever re-serialised them."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def canonical_bytes(message: dict[str, Any], numbers_canonical: bool = False) -> bytes:
    """The bytes that are signed: every field but `sig`, keys sorted, no whitespace.

    In schema v1 only reading values may be non-integral numbers, so only they are normalised;
    a producer whose integral values are already ints (the simulator's) can skip that pass.
    """
    body = {k: v for k, v in message.items() if k != "sig"}
    readings = body.get("readings")
    if isinstance(readings, dict) and not numbers_canonical:
        body["readings"] = {
            name: {**r, "value": _canonical_number(r["value"])} if isinstance(r, dict) and "value" in r else r
            for name, r in readings.items()
        }
    return _CANONICAL_ENCODER.encode(body).encode()


def sign(message: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 of the canonical form, hex encoded (the `sig` field)."""
    return signature(canonical_bytes(message), key)


def signature(canonical: bytes, key: bytes) -> str:
    """The `sig` of already canonical bytes: the one-shot C path, no HMAC object per message."""
    return hmac.digest(key, canonical, "sha256").hex()


def signed_payload(message: dict[str, Any], key: bytes, numbers_canonical: bool = False) -> bytes:
    """The wire bytes of a message: its canonical form with `sig` appended (one JSON encode)."""
    return with_signature(canonical_bytes(message, numbers_canonical), key)


def with_signature(canonical: bytes, key: bytes) -> bytes:
    """Canonical bytes (a JSON object without `sig`) with their signature appended as the last field."""
    return canonical[:-1] + b',"sig":"' + signature(canonical, key).encode() + b'"}'


def sort_key(ts_ms: int, msg_id: int) -> str:
    """DynamoDB sort key: time ordered, and the same for every delivery of one message."""
    return f"{ts_ms:013d}#{msg_id:010d}"


def new_message(
    *,
    device_id: str,
    msg_id: int,
    ts: int,
    device_type: str,
    firmware: str,
    readings: dict[str, tuple[float | bool, str]],
    key: bytes,
    site: str | None = None,
) -> dict[str, Any]:
    """A signed schema-v1 message; readings are given as {name: (value, unit)}."""
    message: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "msg_id": msg_id,
        "ts": ts,
        "device_type": device_type,
        "firmware": firmware,
        "readings": {name: {"value": value, "unit": unit} for name, (value, unit) in readings.items()},
    }
    if site is not None:
        message["site"] = site
    message["sig"] = sign(message, key)
    return message
