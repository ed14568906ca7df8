"""Settings read once from the Lambda environment (set by infra/processor.tf)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from processor.exceptions import ConfigurationError

ENVIRONMENT_KEYS = (
    "TELEMETRY_TABLE",
    "ALERT_STATE_TABLE",
    "ARCHIVE_STREAM",
    "ARCHIVE_BUCKET",
    "ALERTS_TOPIC_ARN",
    "SIGNING_SECRET_ARN",
    "ALERT_RULES",
    "ALERT_COOLDOWN_SECONDS",
    "MAX_CLOCK_SKEW_SECONDS",
    "TELEMETRY_TTL_DAYS",
)
# Set by infra/ for the libraries the processor uses, which read them themselves.
LIBRARY_ENVIRONMENT_KEYS = ("POWERTOOLS_LOG_LEVEL",)


@dataclass(frozen=True)
class Threshold:
    """Bounds of one reading for one device type; outside them an alert is raised."""

    minimum: float | None
    maximum: float | None
    severity: str


@dataclass(frozen=True)
class Settings:
    telemetry_table: str
    alert_state_table: str
    archive_stream: str
    archive_bucket: str
    alerts_topic_arn: str
    signing_secret_arn: str
    thresholds: dict[str, dict[str, Threshold]]
    alert_cooldown_seconds: int
    max_clock_skew_seconds: int
    telemetry_ttl_days: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        missing = [k for k in ENVIRONMENT_KEYS if not env.get(k)]
        if missing:
            raise ConfigurationError(f"missing environment variables: {', '.join(missing)}")
        try:
            return cls(
                telemetry_table=env["TELEMETRY_TABLE"],
                alert_state_table=env["ALERT_STATE_TABLE"],
                archive_stream=env["ARCHIVE_STREAM"],
                archive_bucket=env["ARCHIVE_BUCKET"],
                alerts_topic_arn=env["ALERTS_TOPIC_ARN"],
                signing_secret_arn=env["SIGNING_SECRET_ARN"],
                thresholds=parse_thresholds(env["ALERT_RULES"]),
                alert_cooldown_seconds=int(env["ALERT_COOLDOWN_SECONDS"]),
                max_clock_skew_seconds=int(env["MAX_CLOCK_SKEW_SECONDS"]),
                telemetry_ttl_days=int(env["TELEMETRY_TTL_DAYS"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigurationError(f"malformed processor setting: {exc}") from exc


def parse_thresholds(text: str) -> dict[str, dict[str, Threshold]]:
    """ALERT_RULES is `{device_type: {reading: {min, max, severity}}}` (Terraform's jsonencode)."""
    rules = json.loads(text)
    return {
        device_type: {
            reading: Threshold(
                minimum=None if bounds.get("min") is None else float(bounds["min"]),
                maximum=None if bounds.get("max") is None else float(bounds["max"]),
                severity=bounds.get("severity") or "warning",
            )
            for reading, bounds in readings.items()
        }
        for device_type, readings in rules.items()
    }
