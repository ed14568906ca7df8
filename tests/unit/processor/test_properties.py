"""Property: no record can fail its neighbours.

Schema-valid, signed messages are mutated the ways a faulty or hostile device could (huge
integers, floats where integers belong, lone surrogates sent as JSON escapes, wrong units and
types, re-signed or not) and mixed with random bytes. Each batch also holds one valid message:
the pipeline never raises, accepts that message, and quarantines or accepts every other record
with a specific reason (never `internal_error`, never a retry).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from processor.config import Settings
from processor.types import InboundRecord
from telemetry.reasons import RejectReason
from telemetry.schema import DEVICE_TYPES, SENSORS, new_message, sign
from testbed.bench.fakes import SIGNING_KEY, fake_settings
from tests.conftest import examples
from tests.unit.moto_aws import MotoAws

SETTINGS = fake_settings()
SKEW_MS = SETTINGS.max_clock_skew_seconds * 1000
ARRIVAL_MS = int(time.time() * 1000)
VALID_DEVICE = "valid-device"  # hostile device ids start with "h": never the same reading
MAX_EXAMPLES = examples(200)

# Any code point, lone surrogates (which `json.dumps` sends as `\udxxx` escapes) often among them.
ANY_CHAR = st.one_of(st.characters(exclude_categories=()), st.integers(0xD800, 0xDFFF).map(chr))
ANY_TEXT = st.text(ANY_CHAR, max_size=70)
HUGE_INT = st.one_of(st.integers(min_value=10**300, max_value=10**400), st.integers(max_value=-(10**300)))
ANY_NUMBER = st.one_of(HUGE_INT, st.integers(), st.floats(), st.booleans())
ANY_JSON = st.recursive(
    st.one_of(st.none(), ANY_NUMBER, ANY_TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(ANY_TEXT, inner, max_size=3)),
    max_leaves=6,
)
ALL_UNITS = sorted({u for sensor in SENSORS.values() for u in sensor.units})


def _reading_value(name: str) -> st.SearchStrategy[float | bool]:
    sensor = SENSORS[name]
    if sensor.unit == "bool":
        return st.booleans()
    return st.floats(min_value=sensor.minimum, max_value=sensor.maximum, allow_nan=False)


HOSTILE_DEVICE_IDS = st.from_regex(r"h[A-Za-z0-9_-]{0,63}", fullmatch=True)


@st.composite
def valid_messages(draw: st.DrawFn, device_ids: st.SearchStrategy[str]) -> dict[str, Any]:
    """A schema-valid message signed with the current key, from the sensor catalog."""
    device_type = draw(st.sampled_from(sorted(DEVICE_TYPES)))
    sensors = draw(st.lists(st.sampled_from(DEVICE_TYPES[device_type].sensors), min_size=1, unique=True))
    return new_message(
        device_id=draw(device_ids),
        msg_id=draw(st.integers(0, 9_999_999_999)),
        ts=ARRIVAL_MS + draw(st.integers(-SKEW_MS, SKEW_MS)),
        device_type=device_type,
        firmware=draw(st.text(min_size=1, max_size=32)),
        site=draw(st.none() | st.text(max_size=64)),
        readings={name: (draw(_reading_value(name)), SENSORS[name].unit) for name in sensors},
        key=SIGNING_KEY,
    )


MUTATIONS = ("huge", "float", "text", "value", "unit", "name", "json", "drop", "extra")
TOP_LEVEL_FIELDS = ("ts", "msg_id", "schema_version", "device_id", "device_type", "firmware", "site", "sig")
TEXT_FIELDS = ("site", "firmware", "sig", "device_type", "device_id")


def _mutate(draw: st.DrawFn, message: dict[str, Any]) -> None:
    """Change one field of the message in type or value, in place."""
    readings = message["readings"]
    reading = draw(st.sampled_from(sorted(readings)))
    field = draw(st.sampled_from(TOP_LEVEL_FIELDS))
    change = draw(st.sampled_from(MUTATIONS))
    if change == "huge":
        if draw(st.booleans()):
            readings[reading]["value"] = draw(HUGE_INT)
        else:
            message[draw(st.sampled_from(["ts", "msg_id"]))] = draw(HUGE_INT)
    elif change == "float":
        current = message.get(field)
        # an earlier mutation may have made it too large for a float: then any float will do
        if isinstance(current, int) and abs(current) < 2**53:
            message[field] = float(current)
        else:
            message[field] = draw(st.floats())
    elif change == "text":
        message[draw(st.sampled_from(TEXT_FIELDS))] = draw(ANY_TEXT)
    elif change == "value":
        readings[reading]["value"] = draw(ANY_JSON)
    elif change == "unit":
        readings[reading]["unit"] = draw(st.one_of(st.sampled_from(ALL_UNITS), ANY_TEXT))
    elif change == "name":
        readings[draw(ANY_TEXT)] = readings.pop(reading)
    elif change == "json":
        message[field] = draw(ANY_JSON)
    elif change == "drop":
        message.pop(field, None)
    else:
        message[draw(ANY_TEXT)] = draw(ANY_JSON)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> str:
    """Random bytes, or a valid message changed in one to three ways and then re-signed or not."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=300)).decode("utf-8", "surrogateescape")
    message = draw(valid_messages(HOSTILE_DEVICE_IDS))
    for _ in range(draw(st.integers(1, 3))):
        _mutate(draw, message)
    if draw(st.booleans()):
        message.pop("sig", None)
        try:
            message["sig"] = sign(message, SIGNING_KEY)
        except ValueError:  # no canonical form (a surrogate, NaN): it stays unsigned and must be rejected
            message["sig"] = ""
    return json.dumps(message)


@pytest.fixture
def settings() -> Settings:
    """No alert thresholds: these batches are about validation, not alerting."""
    return SETTINGS


@hsettings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    valid=valid_messages(st.just(VALID_DEVICE)),
    hostile=st.lists(hostile_bodies(), min_size=1, max_size=8),
    position=st.integers(0, 8),
)
def test_hostile_records_never_fail_their_neighbours(
    aws: MotoAws, valid: dict[str, Any], hostile: list[str], position: int
) -> None:
    aws.start_example()
    bodies = [*hostile]
    position = min(position, len(bodies))
    bodies.insert(position, json.dumps(valid))

    outcome = aws.pipeline().process([InboundRecord(f"r{i}", body, ARRIVAL_MS) for i, body in enumerate(bodies)])

    assert outcome.failed == set(), "nothing is retried: every AWS dependency is up"
    assert RejectReason.INTERNAL_ERROR not in outcome.rejected, "every hostile record has a specific reason"
    assert outcome.accepted + outcome.duplicates + outcome.rejected.total() == len(bodies)
    assert any(item["device_id"]["S"] == VALID_DEVICE for item in aws.dynamodb.written), "the valid message is stored"
    assert f"r{position}" not in {doc["record_id"] for doc in aws.quarantined()}
