"""Fixtures shared by every test folder: message factories and settings."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from processor.config import Settings, parse_thresholds
from telemetry import new_message
from testbed.bench.fakes import SIGNING_KEY, fake_settings

# `make mutation` runs the property tests once per mutant: it caps their examples so a run takes
# minutes, not hours (a mutant that survives a capped run is still listed for a look).
EXAMPLES_CAP = int(os.environ.get("PROPERTY_EXAMPLES_CAP") or 0)


def examples(wanted: int) -> int:
    """A property test's example count: `wanted`, or fewer under PROPERTY_EXAMPLES_CAP."""
    return min(wanted, EXAMPLES_CAP) if EXAMPLES_CAP > 0 else wanted


THRESHOLDS = json.dumps(
    {
        "environmental": {"temperature": {"max": 45, "severity": "critical"}, "co2": {"max": 2000}},
        "cold_chain": {"temperature": {"min": -30, "max": 8, "severity": "critical"}},
    }
)


def make_message(
    device_id: str = "env-0001",
    msg_id: int = 1,
    ts: int | None = None,
    readings: dict[str, tuple[Any, str]] | None = None,
    key: bytes = SIGNING_KEY,
    device_type: str = "environmental",
) -> dict[str, Any]:
    return new_message(
        device_id=device_id,
        msg_id=msg_id,
        ts=int(time.time() * 1000) if ts is None else ts,
        device_type=device_type,
        firmware="1.2.3",
        site="plant-a",
        readings=readings or {"temperature": (21.5, "C"), "humidity": (40.0, "%")},
        key=key,
    )


@pytest.fixture
def settings() -> Settings:
    return fake_settings(parse_thresholds(THRESHOLDS))
