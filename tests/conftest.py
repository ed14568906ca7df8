"""Fixtures shared by every test folder: message factories and settings."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from processor.config import Settings, parse_thresholds
from telemetry import new_message
from testbed.fakes import SIGNING_KEY, fake_settings

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
