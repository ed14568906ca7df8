"""Threshold and anomaly rules, and cooldown-guarded publishing (processor/alerts.py)."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from processor.alerts import ANOMALY_MIN_SAMPLES, AlertPublisher, AnomalyDetector, evaluate
from processor.config import Settings
from processor.types import Alert
from processor.validation import parse
from tests.conftest import make_message
from tests.unit.moto_aws import MotoAws

NOW = int(time.time() * 1000)


def telemetry(
    temperature: float, msg_id: int = 1, ts: int = NOW, device_type: str = "environmental", device_id: str = "d"
) -> object:
    message = make_message(
        device_id=device_id, msg_id=msg_id, ts=ts, readings={"temperature": (temperature, "C")}, device_type=device_type
    )
    return parse(json.dumps(message), arrival_ms=NOW, max_skew_ms=10**9)


def test_thresholds_per_device_type(settings: Settings) -> None:
    detector = AnomalyDetector()
    assert evaluate(telemetry(30), settings.thresholds, detector) == []  # type: ignore[arg-type]
    (high,) = evaluate(telemetry(50), settings.thresholds, detector)  # type: ignore[arg-type]
    assert (high.rule, high.reading, high.severity) == ("threshold_high", "temperature", "critical")
    (cold,) = evaluate(telemetry(30, device_type="cold_chain"), settings.thresholds, detector)  # type: ignore[arg-type]
    assert cold.rule == "threshold_high"
    (low,) = evaluate(telemetry(-35, device_type="cold_chain"), settings.thresholds, detector)  # type: ignore[arg-type]
    assert low.rule == "threshold_low"


def test_anomaly_needs_history_then_flags_outliers() -> None:
    detector = AnomalyDetector()
    rng = random.Random(1)

    def observe(device_id: str, value: float) -> float | None:
        z = detector.score(device_id, "temperature", value)
        detector.learn(telemetry(value, device_id=device_id))  # type: ignore[arg-type]
        return z

    assert observe("d", 100.0) is None
    for _ in range(ANOMALY_MIN_SAMPLES * 7):  # long enough for the first outlier to fade
        assert observe("d", 20 + rng.gauss(0, 0.5)) is None
    first, again = (detector.score("d", "temperature", 40.0) for _ in range(2))
    assert first == again, "scoring learns nothing"
    z = observe("d", 40.0)
    assert z is not None and z > 6
    assert observe("other", 40.0) is None, "state is per device"


def publisher(aws: MotoAws) -> AlertPublisher:
    """The alert-state table in moto, which evaluates the publisher's condition expressions as DynamoDB does."""
    return AlertPublisher(
        aws.dynamodb, aws.settings.alert_state_table, aws.sns, aws.settings.alerts_topic_arn, cooldown_seconds=300
    )


def alert(msg_id: int, ts: int, settings: Settings) -> Alert:
    return evaluate(telemetry(60, msg_id=msg_id, ts=ts), settings.thresholds, AnomalyDetector())[0]  # type: ignore[arg-type]


def publish_at(pub: AlertPublisher, a: Alert, now_ms: int | None = None, lease_ms: int = 30_000) -> bool:
    """Publish as an invocation running at `now_ms` (the alert's time by default) with `lease_ms` left."""
    now_ms = a.ts if now_ms is None else now_ms
    return pub.publish(a, now_ms, now_ms + lease_ms)


def test_cooldown_suppresses_repeats_until_it_expires(settings: Settings, aws: MotoAws) -> None:
    pub = publisher(aws)
    assert publish_at(pub, alert(1, NOW, settings))
    assert not publish_at(pub, alert(2, NOW + 60_000, settings))
    assert publish_at(pub, alert(3, NOW + 300_000, settings)), "a full cooldown later"
    assert [a["msg_id"] for a in aws.alerts()] == [1, 3]
    attrs = aws.alerts()[0]["attributes"]
    assert {k: v["Value"] for k, v in attrs.items()} == {
        "severity": "critical",
        "device_type": "environmental",
        "rule": "threshold_high",
    }


def test_redelivered_message_alerts_once(settings: Settings, aws: MotoAws) -> None:
    pub = publisher(aws)
    assert publish_at(pub, alert(1, NOW, settings))
    assert not publish_at(pub, alert(1, NOW, settings))
    assert not publish_at(pub, alert(1, NOW, settings), now_ms=NOW + 60_000), "published: the lease is moot"
    assert len(aws.alerts()) == 1


def test_failed_publish_can_be_retried_by_the_same_message(settings: Settings, aws: MotoAws) -> None:
    aws.sns.fail("Publish", "Throttled")
    pub = publisher(aws)
    with pytest.raises(ClientError):
        publish_at(pub, alert(1, NOW, settings))
    assert not publish_at(pub, alert(2, NOW + 1, settings)), "another message is still cooled down"
    assert publish_at(pub, alert(1, NOW, settings))
    assert [a["msg_id"] for a in aws.alerts()] == [1]


def test_a_copy_in_another_invocation_is_suppressed_while_the_claim_is_leased(settings: Settings, aws: MotoAws) -> None:
    """Two invocations with the same message at once (SQS delivers duplicates concurrently): one alert."""
    pub = publisher(aws)
    first = alert(1, NOW, settings)
    claim: dict[str, Any] = {  # what a claimant that died before publishing leaves
        "pk": {"S": f"{first.device_id}#{first.rule}#{first.reading}"},
        "last_ts": {"N": str(NOW)},
        "last_msg": {"S": "1"},
        "published": {"BOOL": False},
        "lease_until": {"N": str(NOW + 30_000)},
    }
    aws.clients.dynamodb.put_item(TableName=aws.settings.alert_state_table, Item=claim)
    assert not publish_at(pub, first, now_ms=NOW + 1_000), "the claimant may still be publishing"
    assert publish_at(pub, first, now_ms=NOW + 31_000), "its lease passed: it died, so this copy publishes"
    assert len(aws.alerts()) == 1
