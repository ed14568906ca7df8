"""Hostile device payloads, each with the one outcome the pipeline must give it.

Outcomes: `quarantined:<reason>` (the processor kept it with that reason), `dead_lettered` (the
rule's error action kept the original payload in the DLQ) or `refused` (the broker never let
it in: the ACL, or a packet over AWS IoT's limit). None of them may ever be stored.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingress.broker import IOT_MAX_PAYLOAD_BYTES
from telemetry import new_message
from telemetry.schema import MAX_MESSAGE_BYTES, sign

DEAD_LETTERED = "dead_lettered"
REFUSED = "refused"
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[str, bytes], bytes]  # (device id, signing key) -> payload
    outcome: str
    # where the device publishes, relative to its own id (topic tricks publish elsewhere)
    topic: Callable[[str], str] = lambda device: f"sensors/{device}/telemetry"


def base(device: str, key: bytes, **changes: Any) -> dict[str, Any]:
    """A valid, signed message of this device, with fields changed afterwards (not re-signed)."""
    message = new_message(
        device_id=device,
        msg_id=1,
        ts=int(time.time() * 1000),
        device_type="environmental",
        firmware="2.1.0",
        site="plant-a",
        readings={"temperature": (21.5, "C"), "humidity": (40.0, "%")},
        key=key,
    )
    message.update(changes)
    return message


def resigned(message: dict[str, Any], key: bytes) -> dict[str, Any]:
    """What a device holding the key (a compromised one) sends: the hostile content, validly signed."""
    message = copy.deepcopy(message)
    message.pop("sig", None)
    message["sig"] = sign(message, key)
    return message


def dumps(message: Any) -> bytes:
    return json.dumps(message).encode()


def changed(**changes: Any) -> Callable[[str, bytes], bytes]:
    return lambda d, k: dumps(base(d, k, **changes))


def signed_with(**changes: Any) -> Callable[[str, bytes], bytes]:
    return lambda d, k: dumps(resigned(base(d, k, **changes), k))


def reading(value: Any, unit: str = "C", name: str = "temperature") -> Callable[[str, bytes], bytes]:
    return lambda d, k: dumps(resigned(base(d, k, readings={name: {"value": value, "unit": unit}}), k))


def reading_text(number: str) -> Callable[[str, bytes], bytes]:
    """A device's message whose temperature is written as `number` (a JSON number Python's json
    cannot write, such as 1e400), before its signature is checked."""
    marker = 12345.678

    def build(d: str, k: bytes) -> bytes:
        text = dumps(resigned(base(d, k, readings={"temperature": {"value": marker, "unit": "C"}}), k))
        return text.replace(str(marker).encode(), number.encode(), 1)

    return build


def raw(text: str) -> Callable[[str, bytes], bytes]:
    """A JSON text that json.dumps cannot write (NaN, a lone surrogate, a duplicate key)."""
    return lambda d, k: text.replace("DEVICE", d).encode()


def without(field: str) -> Callable[[str, bytes], bytes]:
    def build(d: str, k: bytes) -> bytes:
        message = base(d, k)
        del message[field]
        return dumps(resigned(message, k) if field != "sig" else message)

    return build


def utf8(text: str) -> Callable[[str, bytes], bytes]:
    return lambda d, k: text.encode()


def padded_to(size: int) -> Callable[[str, bytes], bytes]:
    """A signed message with a `pad` field that makes the payload exactly `size` bytes."""

    def build(d: str, k: bytes) -> bytes:
        head = dumps(resigned(base(d, k), k))[:-1] + b', "pad": "'
        return head + b"x" * (size - len(head) - 2) + b'"}'

    return build


def tampered(d: str, k: bytes) -> bytes:
    message = base(d, k)
    message["readings"]["temperature"]["value"] = 99.0
    return dumps(message)


def spoofed(d: str, k: bytes) -> bytes:
    """A message validly signed for another device, sent on this device's topic."""
    return dumps(base("some-other-device", k))


def victim(device: str) -> str:
    return f"{device}-victim"


def topic_of(device: str) -> str:
    return f"sensors/{device}/telemetry"


def ts_now() -> int:
    return int(time.time() * 1000)


CASES: tuple[Case, ...] = (
    # not JSON at all, or JSON the rule cannot add fields to: the rule's error action
    Case("empty", utf8(""), DEAD_LETTERED),
    Case("whitespace", utf8("  \n\t "), DEAD_LETTERED),
    Case("json-null", utf8("null"), DEAD_LETTERED),
    Case("json-array", utf8("[1, 2, 3]"), DEAD_LETTERED),
    Case("json-string", utf8('"telemetry"'), DEAD_LETTERED),
    Case("json-number", utf8("42"), DEAD_LETTERED),
    Case("truncated", lambda d, k: dumps(base(d, k))[:-7], DEAD_LETTERED),
    Case("trailing-garbage", lambda d, k: dumps(base(d, k)) + b" }{", DEAD_LETTERED),
    Case("deep-array-nesting", utf8("[" * 50_000), DEAD_LETTERED),
    Case("deep-object-nesting", utf8('{"a":' * 5_000 + "1" + "}" * 5_000), DEAD_LETTERED),
    Case("utf-16", lambda d, k: dumps(base(d, k)).decode().encode("utf-16"), DEAD_LETTERED),
    Case("utf-8-bom", lambda d, k: b"\xef\xbb\xbf" + dumps(base(d, k)), DEAD_LETTERED),
    Case("invalid-utf-8", lambda d, k: dumps(base(d, k)).replace(b"plant-a", b"plant-\xff\xfe"), DEAD_LETTERED),
    Case("overlong-utf-8", lambda d, k: dumps(base(d, k)).replace(b"plant-a", b"plant-\xc0\xaf"), DEAD_LETTERED),
    Case("raw-control-character", lambda d, k: dumps(base(d, k)).replace(b"plant-a", b"plant-\x00"), DEAD_LETTERED),
    Case("binary", lambda d, k: bytes(range(256)) * 4, DEAD_LETTERED),
    # valid JSON (the grammar has no range): the rule passes it on, the processor keeps it with its reason
    Case("integer-of-5000-digits", utf8('{"v": ' + "9" * 5000 + "}"), "quarantined:invalid_json"),
    Case("over-aws-iot-payload-limit", padded_to(IOT_MAX_PAYLOAD_BYTES + 100), DEAD_LETTERED),
    # JSON numbers and strings the processor must not choke on
    Case("nan", raw('{"schema_version": 1, "device_id": "DEVICE", "v": NaN}'), DEAD_LETTERED),
    Case("infinity", raw('{"schema_version": 1, "device_id": "DEVICE", "v": -Infinity}'), DEAD_LETTERED),
    Case(
        "beyond-a-double",
        raw('{"schema_version": 1, "device_id": "DEVICE", "v": 1e400}'),
        "quarantined:schema_violation",
    ),
    Case("reading-beyond-a-double", reading_text("1e400"), "quarantined:out_of_range"),
    Case("integer-of-400-digits", reading(int("9" * 400)), "quarantined:out_of_range"),
    Case("lone-surrogate", lambda d, k: dumps(base(d, k, site="\ud800")), "quarantined:invalid_encoding"),
    Case("non-ascii-signature", changed(sig="é" * 64), "quarantined:bad_signature"),
    # wrong types, ranges and shapes
    Case("ts-integral-float", signed_with(ts=float(ts_now())), "quarantined:schema_violation"),
    Case("msg-id-integral-float", signed_with(msg_id=1.0), "quarantined:schema_violation"),
    Case("msg-id-negative", signed_with(msg_id=-1), "quarantined:schema_violation"),
    Case("ts-as-string", signed_with(ts=str(ts_now())), "quarantined:schema_violation"),
    Case("missing-ts", without("ts"), "quarantined:schema_violation"),
    Case("missing-sig", without("sig"), "quarantined:schema_violation"),
    Case("extra-field", signed_with(admin=True), "quarantined:schema_violation"),
    Case("readings-as-array", signed_with(readings=[21.5]), "quarantined:schema_violation"),
    Case("reading-as-string", reading("21.5"), "quarantined:schema_violation"),
    Case("reading-without-unit", signed_with(readings={"temperature": {"value": 1}}), "quarantined:schema_violation"),
    Case(
        "too-many-readings",
        signed_with(readings={f"r{n}": {"value": 1, "unit": "C"} for n in range(40)}),
        "quarantined:schema_violation",
    ),
    Case("boolean-for-a-number", reading(True), "quarantined:schema_violation"),
    Case("schema-version-2", signed_with(schema_version=2), "quarantined:unsupported_schema_version"),
    Case("schema-version-string", signed_with(schema_version="1"), "quarantined:unsupported_schema_version"),
    Case("schema-version-true", signed_with(schema_version=True), "quarantined:unsupported_schema_version"),
    Case("unknown-device-type", signed_with(device_type="toaster"), "quarantined:unknown_device_type"),
    Case("unknown-reading", reading(1.0, "C", name="radiation"), "quarantined:unknown_reading"),
    Case("wrong-unit", reading(21.5, "furlongs"), "quarantined:unsupported_unit"),
    Case("out-of-range", reading(10_000.0), "quarantined:out_of_range"),
    Case("over-the-message-limit", padded_to(MAX_MESSAGE_BYTES + 100), "quarantined:too_large"),
    # forged, replayed, spoofed
    Case("forged-signature", changed(sig="0" * 64), "quarantined:bad_signature"),
    Case("signed-with-another-key", lambda d, k: dumps(base(d, b"not-the-key")), "quarantined:bad_signature"),
    Case("tampered-after-signing", tampered, "quarantined:bad_signature"),
    Case("spoofed-device-id", spoofed, "quarantined:bad_signature"),
    Case(
        "duplicate-keys",
        raw('{"schema_version": 1, "schema_version": 2, "device_id": "DEVICE"}'),
        "quarantined:unsupported_schema_version",
    ),
    Case("replayed-two-days-later", signed_with(ts=ts_now() - 2 * DAY_MS), "quarantined:timestamp_skew"),
    Case("from-the-future", signed_with(ts=ts_now() + DAY_MS), "quarantined:timestamp_skew"),
    # topic tricks and what the broker refuses outright
    # a message validly signed for another device (a stolen key), on that device's topic: only the
    # broker's ACL stands between it and the victim's table rows
    Case("another-devices-topic", lambda d, k: dumps(base(victim(d), k)), REFUSED, topic=lambda d: topic_of(victim(d))),
    Case("over-the-packet-limit", padded_to(IOT_MAX_PAYLOAD_BYTES + 1024), REFUSED),
)
