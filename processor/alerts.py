"""Alert rules (per-type thresholds, an online anomaly rule) and cooldown-guarded publishing."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from processor.config import Threshold
from processor.types import Alert, DynamoDBWriter, Publisher, Telemetry

logger = logging.getLogger(__name__)

ANOMALY_ALPHA = 0.05
ANOMALY_MIN_SAMPLES = 30
ANOMALY_Z = 6.0
# Relative floor on the deviation so a perfectly flat channel does not alert on its first wobble.
ANOMALY_MIN_STD_FRACTION = 0.01


class AnomalyDetector:
    """Exponentially weighted mean and variance per (device, reading), kept in this container.

    A reading more than `ANOMALY_Z` deviations from the recent mean is anomalous. The state is
    per container, so after a cold start a device needs `ANOMALY_MIN_SAMPLES` readings again.
    """

    def __init__(self) -> None:
        # (device, reading) -> [count, mean, variance]; lists keep the hot path cheap.
        self._state: dict[tuple[str, str], list[float]] = {}

    def score(self, device_id: str, reading: str, value: float) -> float | None:
        """The value's z-score if it is anomalous, else None; the baseline is left as it is."""
        moments = self._state.get((device_id, reading))
        if moments is None or moments[0] < ANOMALY_MIN_SAMPLES:
            return None
        _, mean, var = moments
        std = max(math.sqrt(var), abs(mean) * ANOMALY_MIN_STD_FRACTION, 1e-9)
        z = (value - mean) / std
        return z if abs(z) > ANOMALY_Z else None

    def learn(self, message: Telemetry) -> None:
        """Fold a message's readings into the baseline: once, when it is done (a message retried is
        scored again on its return, against a baseline it is not part of yet)."""
        for reading, value in message.readings.items():
            moments = self._state.get((message.device_id, reading))
            if moments is None:
                self._state[(message.device_id, reading)] = [1, value, 0.0]
                continue
            count, mean, var = moments
            delta = value - mean
            moments[0] = count + 1
            moments[1] = mean + ANOMALY_ALPHA * delta
            moments[2] = (1 - ANOMALY_ALPHA) * (var + ANOMALY_ALPHA * delta * delta)


def evaluate(message: Telemetry, thresholds: dict[str, dict[str, Threshold]], detector: AnomalyDetector) -> list[Alert]:
    """Every alert this message raises (before cooldown); the detector learns nothing from it here."""
    alerts: list[Alert] = []
    rules = thresholds.get(message.device_type, {})
    for reading, value in message.readings.items():
        bound = rules.get(reading)
        if bound is not None and bound.maximum is not None and value > bound.maximum:
            alerts.append(_alert(message, "threshold_high", reading, value, bound.severity, f"above {bound.maximum:g}"))
        elif bound is not None and bound.minimum is not None and value < bound.minimum:
            alerts.append(_alert(message, "threshold_low", reading, value, bound.severity, f"below {bound.minimum:g}"))
        z = detector.score(message.device_id, reading, value)
        if z is not None:
            alerts.append(_alert(message, "anomaly", reading, value, "warning", f"{z:+.1f} sigma from recent mean"))
    return alerts


def _alert(message: Telemetry, rule: str, reading: str, value: float, severity: str, why: str) -> Alert:
    return Alert(
        device_id=message.device_id,
        device_type=message.device_type,
        msg_id=message.msg_id,
        ts=message.ts,
        rule=rule,
        reading=reading,
        value=value,
        severity=severity,
        message=f"{message.device_id} {reading}={value:g} {why}",
    )


class AlertPublisher:
    """Publishes an alert once per (device, rule, reading) and cooldown window.

    The window is claimed with a conditional write, so concurrent containers and redelivered
    messages agree. A claim is leased until the claiming invocation's deadline: a copy of the same
    message in another invocation meanwhile is suppressed, and only once the lease has passed (the
    claimant died) or been released (its publish failed) may the same message claim again.
    """

    def __init__(
        self, dynamodb: DynamoDBWriter, table: str, sns: Publisher, topic_arn: str, cooldown_seconds: int
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._sns = sns
        self._topic_arn = topic_arn
        self._cooldown_ms = cooldown_seconds * 1000

    def publish(self, alert: Alert, now_ms: int, lease_until_ms: int) -> bool:
        """Return True if published, False if suppressed by the cooldown or a live claim. Errors propagate."""
        key = {"pk": {"S": f"{alert.device_id}#{alert.rule}#{alert.reading}"}}
        msg = {"S": str(alert.msg_id)}
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression=(
                    "SET last_ts = :ts, last_msg = :msg, published = :no, lease_until = :lease, expires_at = :exp"
                ),
                ConditionExpression=(
                    "attribute_not_exists(pk) OR last_ts <= :cutoff OR (last_msg = :msg AND published = :no"
                    " AND (attribute_not_exists(lease_until) OR lease_until < :now))"
                ),
                ExpressionAttributeValues={
                    ":ts": {"N": str(alert.ts)},
                    ":msg": msg,
                    ":no": {"BOOL": False},
                    ":now": {"N": str(now_ms)},
                    ":lease": {"N": str(lease_until_ms)},
                    ":cutoff": {"N": str(alert.ts - self._cooldown_ms)},
                    ":exp": {"N": str(alert.ts // 1000 + 2 * self._cooldown_ms // 1000 + 86400)},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        try:
            self._send(alert)
        except Exception:
            self._release(key, msg)
            raise
        # SNS has it: failing the record would publish it again once the lease passed
        self._update_claim(key, "SET published = :yes", "last_msg = :msg", {":yes": {"BOOL": True}, ":msg": msg})
        return True

    def _release(self, key: dict[str, Any], msg: dict[str, str]) -> None:
        """After a failed publish: let this message's redelivery claim again without waiting for the lease."""
        values = {":zero": {"N": "0"}, ":msg": msg, ":no": {"BOOL": False}}
        self._update_claim(key, "SET lease_until = :zero", "last_msg = :msg AND published = :no", values)

    def _update_claim(self, key: dict[str, Any], update: str, condition: str, values: dict[str, Any]) -> None:
        """A claim's follow-up write; if it fails, the claim holds until its lease passes."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("alert claim not updated (%s), it holds until its lease passes: %s", update, exc)

    def _send(self, alert: Alert) -> None:
        self._sns.publish(
            TopicArn=self._topic_arn,
            Subject=f"{alert.severity}: {alert.rule} {alert.reading}"[:100],
            Message=json.dumps(asdict(alert)),
            MessageAttributes={
                "severity": {"DataType": "String", "StringValue": alert.severity},
                "device_type": {"DataType": "String", "StringValue": alert.device_type},
                "rule": {"DataType": "String", "StringValue": alert.rule},
            },
        )
