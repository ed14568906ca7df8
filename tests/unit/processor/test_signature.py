"""Canonical form, HMAC signature and the cached key ring with rotation (processor/signature.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from processor.exceptions import RecordRejected, TransientFailure
from processor.signature import KEY_CACHE_SECONDS, KEY_REFRESH_MIN_SECONDS, KeyRing, verify
from processor.validation import parse
from simulator.payload import signed_message
from telemetry.schema import canonical_bytes, new_message, sign, signed_payload
from testbed.bench.fakes import SIGNING_KEY
from tests.conftest import examples, make_message
from tests.unit.moto_aws import MotoAws

NOW = int(time.time() * 1000)


def parsed(message: dict[str, object]) -> object:
    return parse(json.dumps(message), arrival_ms=NOW, max_skew_ms=60_000)


def test_canonical_form_ignores_key_order_whitespace_and_integral_floats() -> None:
    a = {"ts": 1, "readings": {"t": {"value": 21.0, "unit": "C"}, "h": {"unit": "%", "value": 40.5}}, "sig": "x"}
    b = {"readings": {"h": {"value": 40.5, "unit": "%"}, "t": {"unit": "C", "value": 21}}, "ts": 1}
    expected = b'{"readings":{"h":{"unit":"%","value":40.5},"t":{"unit":"C","value":21}},"ts":1}'
    assert canonical_bytes(a) == canonical_bytes(b) == expected


def test_signature_survives_reserialisation_by_the_rule_engine() -> None:
    message = make_message(ts=NOW, readings={"temperature": (21.0, "C")})
    reserialised = json.loads(json.dumps(message, indent=2).replace("21.0", "21"))
    verify(parsed(reserialised), (SIGNING_KEY,))  # type: ignore[arg-type]


def test_forged_and_tampered_messages_are_rejected() -> None:
    forged = make_message(ts=NOW, key=b"not-the-key")
    with pytest.raises(RecordRejected, match="bad_signature"):
        verify(parsed(forged), (SIGNING_KEY,))  # type: ignore[arg-type]
    tampered = make_message(ts=NOW)
    tampered["readings"]["temperature"]["value"] = 99.0
    with pytest.raises(RecordRejected, match="bad_signature"):
        verify(parsed(tampered), (SIGNING_KEY,))  # type: ignore[arg-type]


def key_ring(aws: MotoAws, clock: Callable[[], float] = time.monotonic) -> KeyRing:
    return KeyRing(aws.secrets, aws.settings.signing_secret_arn, clock=clock)


def test_previous_key_is_accepted_during_rotation(aws: MotoAws) -> None:
    aws.rotate_key(b"new-key")
    ring = key_ring(aws)
    verify(parsed(make_message(ts=NOW, key=SIGNING_KEY)), ring.keys())  # type: ignore[arg-type]
    verify(parsed(make_message(ts=NOW, key=b"new-key")), ring.keys())  # type: ignore[arg-type]


def test_keys_are_fetched_once_per_cache_period(aws: MotoAws) -> None:
    clock = [0.0]
    ring = key_ring(aws, clock=lambda: clock[0])
    for _ in range(5):
        ring.keys()
    assert aws.secrets.calls["GetSecretValue"] == 2  # AWSCURRENT + AWSPREVIOUS, once
    clock[0] += KEY_CACHE_SECONDS + 1
    ring.keys()
    assert aws.secrets.calls["GetSecretValue"] == 4


def test_only_a_missing_previous_version_is_skipped(aws: MotoAws) -> None:
    """No AWSPREVIOUS (never rotated: Secrets Manager answers ResourceNotFoundException) leaves the
    current key alone; any other error fetching it is an outage, retried, so messages still signed
    with the previous key are not quarantined meanwhile."""
    assert key_ring(aws).keys() == (SIGNING_KEY,)
    aws.rotate_key(b"new-key")
    for code in ("InternalServiceError", "ThrottlingException", "AccessDeniedException"):
        aws.secrets.fail("GetSecretValue", code, times=None, VersionStage="AWSPREVIOUS")
        with pytest.raises(TransientFailure, match="AWSPREVIOUS"):
            key_ring(aws).keys()


@pytest.mark.parametrize("sig", ["é" * 64, "\ud800", "0" * 63 + "é"])
def test_a_non_ascii_signature_is_a_bad_signature(sig: str) -> None:
    with pytest.raises(RecordRejected, match="bad_signature"):
        verify(parsed({**make_message(ts=NOW), "sig": sig}), (SIGNING_KEY,))  # type: ignore[arg-type]


def test_a_mismatch_reloads_the_keys_at_most_once_per_refresh_period(aws: MotoAws) -> None:
    clock = [0.0]
    ring = key_ring(aws, clock=lambda: clock[0])
    ring.keys()
    aws.rotate_key(b"new-key")
    clock[0] += KEY_REFRESH_MIN_SECONDS
    ring.authenticate(parsed(make_message(ts=NOW, key=b"new-key")))  # type: ignore[arg-type]
    assert aws.secrets.calls["GetSecretValue"] == 4, "the rotated key was loaded long before the cache expired"
    forged = parsed(make_message(ts=NOW, key=b"forged"))
    for _ in range(3):
        with pytest.raises(RecordRejected, match="bad_signature"):
            ring.authenticate(forged)  # type: ignore[arg-type]
    assert aws.secrets.calls["GetSecretValue"] == 4, "forged messages reload the keys at most once per period"
    clock[0] += KEY_REFRESH_MIN_SECONDS
    with pytest.raises(RecordRejected, match="bad_signature"):
        ring.authenticate(forged)  # type: ignore[arg-type]
    assert aws.secrets.calls["GetSecretValue"] == 6


def test_unreachable_secret_on_an_early_reload_is_transient(aws: MotoAws) -> None:
    clock = [0.0]
    ring = key_ring(aws, clock=lambda: clock[0])
    ring.keys()
    aws.secrets.fail("GetSecretValue", "InternalServiceError", times=None)
    clock[0] += KEY_REFRESH_MIN_SECONDS
    with pytest.raises(TransientFailure):
        ring.authenticate(parsed(make_message(ts=NOW, key=b"rotated-maybe")))  # type: ignore[arg-type]


def test_unreachable_secret_is_transient(aws: MotoAws) -> None:
    aws.secrets.fail("GetSecretValue", "InternalServiceError", times=None)
    with pytest.raises(TransientFailure):
        key_ring(aws).keys()


def test_sign_is_hex_sha256() -> None:
    assert len(sign({"a": 1}, b"k")) == 64


SIMPLE_TEXT = st.text(min_size=1, max_size=12)
READING_VALUE = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not v.is_integer()),
)


@given(
    device_id=SIMPLE_TEXT,
    site=SIMPLE_TEXT,
    msg_id=st.integers(min_value=0, max_value=2**31),
    readings=st.dictionaries(SIMPLE_TEXT, st.tuples(READING_VALUE, SIMPLE_TEXT), min_size=1, max_size=8),
)
@hsettings(max_examples=examples(500))
def test_the_simulators_fast_payload_is_the_canonical_one(
    device_id: str, site: str, msg_id: int, readings: dict[str, tuple[Any, str]]
) -> None:
    """Any values, however small or large, any text: the same bytes as the stdlib canonical form."""
    message = new_message(
        device_id=device_id,
        msg_id=msg_id,
        ts=1_767_225_600_000,
        device_type="environmental",
        firmware="1.0.0",
        readings=readings,
        key=SIGNING_KEY,
        site=site,
    )
    del message["sig"]
    assert signed_message(message, SIGNING_KEY) == signed_payload(message, SIGNING_KEY, numbers_canonical=True)
