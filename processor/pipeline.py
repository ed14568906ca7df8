"""One batch through validate -> quarantine -> store -> archive -> alert, with I/O injected.

Every record ends in exactly one of: accepted (stored and archived), duplicate of an accepted
record in the same batch, quarantined with a reason, or failed (transient: SQS retries it).
No record can take its neighbours with it: an unexpected exception costs only the records it touched.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from processor.alerts import AlertPublisher, AnomalyDetector, evaluate
from processor.archive import FIREHOSE_MAX_RECORD_BYTES, Archiver
from processor.config import Settings
from processor.exceptions import RecordRejected, TransientFailure
from processor.quarantine import Quarantine
from processor.signature import KeyRing
from processor.store import ReadingStore, to_item
from processor.types import (
    Alert,
    DynamoDBWriter,
    FirehoseWriter,
    InboundRecord,
    ItemKey,
    ObjectWriter,
    Publisher,
    Rejection,
    SecretReader,
    Telemetry,
)
from processor.validation import parse
from telemetry.reasons import RejectReason

logger = logging.getLogger(__name__)

AWS_ERRORS = (ClientError, BotoCoreError)
# How long an alert claim lasts when no invocation deadline is known (in-process use, benchmarks).
DEFAULT_LEASE_S = 60.0
# No archive or alert call starts this close to the invocation's deadline: one, and the record of a
# publish, take well under this on a loaded machine; a 5 s function timeout (the e2e stack's) keeps 4 s.
DEADLINE_MARGIN_S = 1.0
# ... or within this share of the invocation's time, where that is less (a function timeout of 1 s)
MARGIN_SHARE = 0.2


@dataclass
class BatchOutcome:
    """What happened to a batch, for the partial response, metrics and tests."""

    failed: set[str] = field(default_factory=set)
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[RejectReason] = field(default_factory=Counter)
    alerts: int = 0
    alerts_suppressed: int = 0
    lag_ms: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Timing:
    """When a batch's readings were stored, until when they live, when each arrived (the rule's
    hand-off) and when the invocation began: the stored item carries them, so each hop is timed."""

    stored_at_ms: int
    expires_at_s: int
    arrivals: dict[ItemKey, int]
    invoked_at_ms: int


@dataclass(frozen=True)
class Clients:
    dynamodb: DynamoDBWriter
    firehose: FirehoseWriter
    s3: ObjectWriter
    sns: Publisher
    secretsmanager: SecretReader


class Pipeline:
    """Holds per-container state (signing keys, anomaly moments) across invocations."""

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_archive_record_bytes: int = FIREHOSE_MAX_RECORD_BYTES,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._keys = KeyRing(clients.secretsmanager, settings.signing_secret_arn, clock)
        self._store = ReadingStore(clients.dynamodb, settings.telemetry_table, sleep)
        self._archiver = Archiver(clients.firehose, settings.archive_stream, sleep, max_archive_record_bytes)
        self._quarantine = Quarantine(clients.s3, settings.archive_bucket)
        self._alerts = AlertPublisher(
            clients.dynamodb,
            settings.alert_state_table,
            clients.sns,
            settings.alerts_topic_arn,
            settings.alert_cooldown_seconds,
        )
        self._detector = AnomalyDetector()
        self._lease_until_ms = 0
        self._margin_s = DEADLINE_MARGIN_S

    def process(self, records: Sequence[InboundRecord], lease_s: float = DEFAULT_LEASE_S) -> BatchOutcome:
        """Process a batch. Raises TransientFailure if no record can proceed (no signing key).

        `lease_s` is how long this invocation may still run (its alert claims last that long).
        """
        outcome = BatchOutcome()
        now_s = self._clock()
        self._lease_until_ms = int((now_s + lease_s) * 1000)
        self._margin_s = min(DEADLINE_MARGIN_S, lease_s * MARGIN_SHARE)
        self._keys.keys()

        # (device_id, sk) -> the record ids that carry this reading in this batch
        carriers: dict[ItemKey, list[str]] = {}
        accepted: list[Telemetry] = []
        arrivals: dict[ItemKey, int] = {}
        for record_id, body, arrival_ms in records:
            message = self._validate(record_id, body, arrival_ms, now_s, outcome)
            if message is None:
                continue
            ids = carriers.setdefault(message.key, [])
            if ids:
                outcome.duplicates += 1
            else:
                accepted.append(message)
                arrivals[message.key] = arrival_ms
            ids.append(record_id)

        stored_at_ms = int(self._clock() * 1000)
        expires_at = int(now_s) + self.settings.telemetry_ttl_days * 86400
        timing = Timing(stored_at_ms, expires_at, arrivals, invoked_at_ms=int(now_s * 1000))
        failed_keys = self._store_all(accepted, timing)
        ok = [m for m in accepted if m.key not in failed_keys]
        failed_keys |= self._archive_all(ok)
        ok = [m for m in ok if m.key not in failed_keys]
        failed_keys |= self._alert_all(ok, outcome)

        for key in failed_keys:
            outcome.failed.update(carriers[key])
        outcome.accepted = len(accepted) - len(failed_keys)
        outcome.lag_ms = [stored_at_ms - m.ts for m in accepted if m.key not in failed_keys]
        return outcome

    def _validate(
        self, record_id: str, body: str, arrival_ms: int, now_s: float, outcome: BatchOutcome
    ) -> Telemetry | None:
        """The validated message, or None once the record is quarantined or marked for retry.

        Whatever a record holds, it cannot fail its neighbours: an unexpected exception here is a
        processor defect, and the record is quarantined as `internal_error` with it.
        """
        try:
            message = parse(body, arrival_ms=arrival_ms, max_skew_ms=self.settings.max_clock_skew_seconds * 1000)
            self._keys.authenticate(message)
            return message
        except RecordRejected as rejected:
            self._reject(Rejection(record_id, rejected.reason, rejected.detail, body), now_s, outcome)
        except TransientFailure as exc:
            logger.warning("record %s will be retried: %s", record_id, exc)
            outcome.failed.add(record_id)
        except Exception as exc:
            logger.exception("record %s met a processor defect; quarantined", record_id)
            detail = f"{type(exc).__name__}: {exc}"
            self._reject(Rejection(record_id, RejectReason.INTERNAL_ERROR, detail, body), now_s, outcome)
        return None

    def _reject(self, rejection: Rejection, now_s: float, outcome: BatchOutcome) -> None:
        logger.info(
            "quarantined record",
            extra={"reason": rejection.reason.value, "detail": rejection.detail, "correlation_id": rejection.record_id},
        )
        try:
            self._quarantine.put(rejection, now_s)
        except AWS_ERRORS as exc:
            logger.warning("quarantine write failed, record will be retried: %s", exc)
            outcome.failed.add(rejection.record_id)
            return
        except Exception:
            logger.exception("quarantine write failed unexpectedly, record %s will be retried", rejection.record_id)
            outcome.failed.add(rejection.record_id)
            return
        outcome.rejected[rejection.reason] += 1

    def _store_all(self, accepted: list[Telemetry], timing: Timing) -> set[ItemKey]:
        """The keys not stored. An unexpected error costs only the records it touched a retry."""
        failed: set[ItemKey] = set()
        items = []
        for m in accepted:
            try:
                items.append(
                    to_item(
                        m,
                        stored_at_ms=timing.stored_at_ms,
                        expires_at_s=timing.expires_at_s,
                        arrived_at_ms=timing.arrivals.get(m.key),
                        invoked_at_ms=timing.invoked_at_ms,
                    )
                )
            except Exception:
                logger.exception("no DynamoDB item for %s, record will be retried", m.key)
                failed.add(m.key)
        try:
            return failed | self._store.put(items, self._no_time_for_another_write())
        except AWS_ERRORS as exc:
            logger.warning("DynamoDB write failed, %d record(s) will be retried: %s", len(accepted), exc)
        except Exception:
            logger.exception("DynamoDB write failed unexpectedly, %d record(s) will be retried", len(accepted))
        return {m.key for m in accepted}

    def _time_left_s(self) -> float:
        return self._lease_until_ms / 1000 - self._clock()

    def _no_time_for_another_write(self) -> Callable[[], bool]:
        """Asked before each DynamoDB write after the first: True once a write as long as the longest
        so far would leave less than the margin, so what was stored can still be archived and alerted
        (killed at the timeout, the whole batch would be retried, on every delivery of a slow table)."""
        last, longest = self._clock(), 0.0

        def out_of_time() -> bool:
            nonlocal last, longest
            now = self._clock()
            longest, last = max(longest, now - last), now
            return self._time_left_s() < self._margin_s + longest

        return out_of_time

    def _archive_all(self, messages: list[Telemetry]) -> set[ItemKey]:
        if messages and self._time_left_s() < self._margin_s:
            logger.warning("%d record(s) not archived, to be retried: the invocation's deadline is near", len(messages))
            return {m.key for m in messages}
        try:
            return self._archiver.archive([(m.key, m.body) for m in messages])  # type: ignore[return-value]
        except AWS_ERRORS as exc:
            logger.warning("Firehose write failed, %d record(s) will be retried: %s", len(messages), exc)
        except Exception:
            logger.exception("Firehose write failed unexpectedly, %d record(s) will be retried", len(messages))
        return {m.key for m in messages}

    def _alert_all(self, messages: list[Telemetry], outcome: BatchOutcome) -> set[ItemKey]:
        """The keys of messages with an alert not published (retried; the cooldown claims stop repeats).

        After a failed alert, or within the margin before the deadline, no more publishes are tried:
        each failed one waits out the SDK's backoff, and an invocation that outlives its timeout may
        be cut between a publish and its claim's record, which sends that alert twice. The anomaly
        baseline learns a message once it is done, so one retried is scored again on its return.
        """
        failed: set[ItemKey] = set()
        held = 0
        alerting_failed = False
        for message in sorted(messages, key=lambda m: m.ts):
            try:
                alerts = evaluate(message, self.settings.thresholds, self._detector)
                if alerts and (alerting_failed or self._time_left_s() < self._margin_s):
                    held += 1
                    failed.add(message.key)
                elif alerts and not self._alert(alerts, outcome):
                    alerting_failed = True
                    failed.add(message.key)
                else:
                    self._detector.learn(message)
            except Exception:
                logger.exception("alerting failed unexpectedly, record %s will be retried", message.key)
                failed.add(message.key)
        if held:
            logger.warning("%d alerting record(s) to be retried untried: an alert failed or the deadline is near", held)
        return failed

    def _alert(self, alerts: list[Alert], outcome: BatchOutcome) -> bool:
        """Publish a message's alerts; False at the first that failed."""
        for alert in alerts:
            try:
                published = self._alerts.publish(alert, int(self._clock() * 1000), self._lease_until_ms)
            except AWS_ERRORS as exc:
                logger.warning("alert publish failed, record will be retried: %s", exc)
                return False
            if published:
                outcome.alerts += 1
                logger.info("alert", extra={"rule": alert.rule, "correlation_id": f"{alert.device_id}:{alert.msg_id}"})
            else:
                outcome.alerts_suppressed += 1
        return True
