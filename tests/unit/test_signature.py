"""Canonical form, HMAC signature and the cached key ring with rotation (processor/signature.py)."""

from __future__ import annotations

import json
import time
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
from testbed.fakes import SIGNING_KEY, FakeSecrets, client_error
from tests.conftest import make_message

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


def test_previous_key_is_accepted_during_rotation() -> None:
    ring = KeyRing(FakeSecrets(current=b"new-key", previous=SIGNING_KEY), "arn")
    verify(parsed(make_message(ts=NOW, key=SIGNING_KEY)), ring.keys())  # type: ignore[arg-type]
    verify(parsed(make_message(ts=NOW, key=b"new-key")), ring.keys())  # type: ignore[arg-type]


def test_keys_are_fetched_once_per_cache_period() -> None:
    secrets = FakeSecrets()
    clock = [0.0]
    ring = KeyRing(secrets, "arn", clock=lambda: clock[0])
    for _ in range(5):
        ring.keys()
    assert secrets.calls == 2  # AWSCURRENT + AWSPREVIOUS, once
    clock[0] += KEY_CACHE_SECONDS + 1
    ring.keys()
    assert secrets.calls == 4


class Down:
    """A Secrets Manager that is unavailable."""

    def get_secret_value(self, **_: object) -> None:
        raise client_error("InternalServiceError", "GetSecretValue")


class PreviousFails(FakeSecrets):
    """AWSCURRENT is served; fetching AWSPREVIOUS fails with `code`."""

    def __init__(self, code: str) -> None:
        super().__init__(previous=b"old-key")
        self.code = code

    def get_secret_value(self, SecretId: str, VersionStage: str) -> dict[str, Any]:
        if VersionStage == "AWSPREVIOUS":
            raise client_error(self.code, "GetSecretValue")
        return super().get_secret_value(SecretId=SecretId, VersionStage=VersionStage)


def test_only_a_missing_previous_version_is_skipped() -> None:
    """No AWSPREVIOUS (never rotated) leaves the current key alone; any other error fetching it is an
    outage, retried, so messages still signed with the previous key are not quarantined meanwhile."""
    assert KeyRing(PreviousFails("ResourceNotFoundException"), "arn").keys() == (SIGNING_KEY,)
    for code in ("InternalServiceError", "ThrottlingException", "AccessDeniedException"):
        with pytest.raises(TransientFailure, match="AWSPREVIOUS"):
            KeyRing(PreviousFails(code), "arn").keys()


@pytest.mark.parametrize("sig", ["é" * 64, "\ud800", "0" * 63 + "é"])
def test_a_non_ascii_signature_is_a_bad_signature(sig: str) -> None:
    with pytest.raises(RecordRejected, match="bad_signature"):
        verify(parsed({**make_message(ts=NOW), "sig": sig}), (SIGNING_KEY,))  # type: ignore[arg-type]


def test_a_mismatch_reloads_the_keys_at_most_once_per_refresh_period() -> None:
    secrets = FakeSecrets()
    clock = [0.0]
    ring = KeyRing(secrets, "arn", clock=lambda: clock[0])
    ring.keys()
    secrets.current, secrets.previous = b"new-key", SIGNING_KEY
    clock[0] += KEY_REFRESH_MIN_SECONDS
    ring.authenticate(parsed(make_message(ts=NOW, key=b"new-key")))  # type: ignore[arg-type]
    assert secrets.calls == 4, "the rotated key was loaded long before the cache expired"
    forged = parsed(make_message(ts=NOW, key=b"forged"))
    for _ in range(3):
        with pytest.raises(RecordRejected, match="bad_signature"):
            ring.authenticate(forged)  # type: ignore[arg-type]
    assert secrets.calls == 4, "forged messages reload the keys at most once per period"
    clock[0] += KEY_REFRESH_MIN_SECONDS
    with pytest.raises(RecordRejected, match="bad_signature"):
        ring.authenticate(forged)  # type: ignore[arg-type]
    assert secrets.calls == 6


def test_unreachable_secret_on_an_early_reload_is_transient() -> None:
    secrets = FakeSecrets()
    clock = [0.0]
    ring = KeyRing(secrets, "arn", clock=lambda: clock[0])
    ring.keys()
    secrets.get_secret_value = Down().get_secret_value  # type: ignore[method-assign,assignment]
    clock[0] += KEY_REFRESH_MIN_SECONDS
    with pytest.raises(TransientFailure):
        ring.authenticate(parsed(make_message(ts=NOW, key=b"rotated-maybe")))  # type: ignore[arg-type]


def test_unreachable_secret_is_transient() -> None:
    with pytest.raises(TransientFailure):
        KeyRing(Down(), "arn").keys()


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
@hsettings(max_examples=500)
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
