"""Fixtures shared by every test folder: message factories and settings."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from processor.config import Settings, parse_thresholds
from telemetry import new_message
from testbed.fakes import SIGNING_KEY

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
    return Settings(
        telemetry_table="telemetry",
        alert_state_table="alert-state",
        archive_stream="archive",
        archive_bucket="bucket",
        alerts_topic_arn="arn:aws:sns:us-east-1:000000000000:alerts",
        signing_secret_arn="arn:secret",
        thresholds=parse_thresholds(THRESHOLDS),
        alert_cooldown_seconds=300,
        max_clock_skew_seconds=300,
        telemetry_ttl_days=30,
    )
