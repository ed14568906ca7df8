"""Validation and normalisation of schema-v1 messages (processor/validation.py)."""

from __future__ import annotations

import json
import time

import pytest

from processor.exceptions import RecordRejected
from processor.validation import parse
from telemetry.reasons import RejectReason
from telemetry.schema import MAX_MESSAGE_BYTES, sort_key
from tests.conftest import make_message

NOW = int(time.time() * 1000)
SKEW = 300_000


def parse_dict(message: object) -> object:
    return parse(json.dumps(message), arrival_ms=NOW, max_skew_ms=SKEW)


def reason_of(body: str) -> RejectReason:
    with pytest.raises(RecordRejected) as caught:
        parse(body, arrival_ms=NOW, max_skew_ms=SKEW)
    return caught.value.reason


def test_valid_message_is_parsed_and_normalised() -> None:
    message = make_message(ts=NOW, readings={"temperature": (71.6, "F"), "pressure": (101.3, "kPa")})
    parsed = parse(json.dumps(message), arrival_ms=NOW, max_skew_ms=SKEW)
    assert parsed.key == ("env-0001", sort_key(NOW, 1))
    assert parsed.readings["temperature"] == pytest.approx(22.0)
    assert parsed.readings["pressure"] == pytest.approx(1013.0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", RejectReason.INVALID_JSON),
        ('{"a": NaN}', RejectReason.INVALID_JSON),
        # Nested deeper than the interpreter's recursion limit, yet within the size limit.
        ("[" * 8000 + "]" * 8000, RejectReason.INVALID_JSON),
        ('{"a":' * 2500 + "1" + "}" * 2500, RejectReason.INVALID_JSON),
        ("[1, 2]", RejectReason.SCHEMA_VIOLATION),
        ('"\udcff"', RejectReason.INVALID_ENCODING),
        ("x" * (MAX_MESSAGE_BYTES + 1), RejectReason.TOO_LARGE),
    ],
)
def test_unparseable_bodies_are_rejected(body: str, reason: RejectReason) -> None:
    assert reason_of(body) is reason


def mutated(**changes: object) -> str:
    message = make_message(ts=NOW)
    for key, value in changes.items():
        if value is None:
            message.pop(key)
        else:
            message[key] = value
    return json.dumps(message)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"schema_version": 2}, RejectReason.UNSUPPORTED_SCHEMA_VERSION),
        ({"schema_version": True}, RejectReason.UNSUPPORTED_SCHEMA_VERSION),
        ({"msg_id": None}, RejectReason.SCHEMA_VIOLATION),
        ({"msg_id": "7"}, RejectReason.SCHEMA_VIOLATION),
        ({"device_id": "bad id/with slash"}, RejectReason.SCHEMA_VIOLATION),
        ({"extra": 1}, RejectReason.SCHEMA_VIOLATION),
        ({"readings": {}}, RejectReason.SCHEMA_VIOLATION),
        ({"device_type": "toaster"}, RejectReason.UNKNOWN_DEVICE_TYPE),
        ({"ts": NOW + SKEW + 1000}, RejectReason.TIMESTAMP_SKEW),
        ({"ts": NOW - SKEW - 1000}, RejectReason.TIMESTAMP_SKEW),
        ({"readings": {"voltage": {"value": 230, "unit": "V"}}}, RejectReason.UNKNOWN_READING),
        ({"readings": {"temperature": {"value": 20, "unit": "degC"}}}, RejectReason.UNSUPPORTED_UNIT),
        ({"readings": {"temperature": {"value": 500, "unit": "C"}}}, RejectReason.OUT_OF_RANGE),
        ({"readings": {"humidity": {"value": -1, "unit": "%"}}}, RejectReason.OUT_OF_RANGE),
        ({"readings": {"humidity": {"value": True, "unit": "%"}}}, RejectReason.SCHEMA_VIOLATION),
        ({"readings": {"temperature": {"value": "20", "unit": "C"}}}, RejectReason.SCHEMA_VIOLATION),
        ({"readings": {"temperature": {"value": 10**400, "unit": "C"}}}, RejectReason.OUT_OF_RANGE),
        ({"readings": {"pressure": {"value": -(10**309), "unit": "Pa"}}}, RejectReason.OUT_OF_RANGE),
        ({"ts": float(NOW)}, RejectReason.SCHEMA_VIOLATION),
        ({"msg_id": 1.0}, RejectReason.SCHEMA_VIOLATION),
        ({"schema_version": 1.0}, RejectReason.UNSUPPORTED_SCHEMA_VERSION),
        ({"site": "\ud800"}, RejectReason.INVALID_ENCODING),
        ({"firmware": "1.\udfff"}, RejectReason.INVALID_ENCODING),
    ],
)
def test_invalid_messages_name_their_reason(changes: dict[str, object], reason: RejectReason) -> None:
    assert reason_of(mutated(**changes)) is reason


def test_boolean_sensor_requires_boolean() -> None:
    ok = make_message(ts=NOW, device_type="cold_chain", readings={"door_open": (True, "bool")})
    assert parse(json.dumps(ok), arrival_ms=NOW, max_skew_ms=SKEW).readings == {"door_open": 1.0}
    bad = make_message(ts=NOW, device_type="cold_chain", readings={"door_open": (1, "bool")})
    assert reason_of(json.dumps(bad)) is RejectReason.SCHEMA_VIOLATION


def test_skew_is_measured_from_arrival_not_from_processing() -> None:
    """A redelivery long after it arrived is judged by when it arrived."""
    arrived = NOW - 10 * SKEW
    body = json.dumps(make_message(ts=arrived + SKEW // 2))
    assert parse(body, arrival_ms=arrived, max_skew_ms=SKEW).ts == arrived + SKEW // 2
    assert reason_of(body) is RejectReason.TIMESTAMP_SKEW, "measured from NOW it is skewed"


def detail_of(body: str, arrival_ms: int = NOW) -> str:
    with pytest.raises(RecordRejected) as caught:
        parse(body, arrival_ms=arrival_ms, max_skew_ms=SKEW)
    return caught.value.detail


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("x" * (MAX_MESSAGE_BYTES + 1), f"{MAX_MESSAGE_BYTES + 1} bytes > {MAX_MESSAGE_BYTES}"),
        ("[1, 2]", "message is not a JSON object"),
        ("{not json", "Expecting property name"),
        ('"\udcff"', "surrogate"),
        (mutated(schema_version=2), "schema_version 2"),
        (mutated(msg_id="7"), "data.msg_id must be integer"),
        (mutated(msg_id=1.5), "data.msg_id must be integer"),
        (mutated(device_type="toaster"), "'toaster' not in ['cold_chain', 'environmental'"),
        (mutated(extra=1), "must not contain {'extra'} properties"),
        (mutated(ts=NOW + 600_000), "is +600 s from its arrival"),
        (mutated(ts=NOW - 900_000), "is -900 s from its arrival"),
        (mutated(site="\ud800"), "surrogate"),
    ],
)
def test_a_rejection_says_what_was_wrong(body: str, detail: str) -> None:
    """The detail is what a user reads in the quarantine next to the reason code."""
    assert detail in detail_of(body)


def test_the_limits_are_inclusive_at_their_boundaries() -> None:
    assert reason_of("x" * MAX_MESSAGE_BYTES) is RejectReason.INVALID_JSON, "exactly the limit is not too large"
    for ts in (NOW + SKEW, NOW - SKEW):
        assert parse(mutated(ts=ts), arrival_ms=NOW, max_skew_ms=SKEW).ts == ts


def test_the_site_is_carried_when_given() -> None:
    assert parse(mutated(site="dock-3"), arrival_ms=NOW, max_skew_ms=SKEW).site == "dock-3"
    assert parse(mutated(site=None), arrival_ms=NOW, max_skew_ms=SKEW).site is None
