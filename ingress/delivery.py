"""What the rule bridge's two halves share: its configuration, a message on its way through the
rule, and the counters. The MQTT session (bridge.py) takes messages in and acknowledges them; the
actions (actions.py) deliver them to the pipeline and settle each one."""

from __future__ import annotations

import itertools
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingress.rule import Message, Rule
from toolkit.histogram import LatencyHistogram

# The SQS visibility timeout when the stack's queue does not say (the provider's default).
DEFAULT_VISIBILITY_TIMEOUT_S = 30.0
# Direct mode: what one invocation may carry and how many run at once. Each invocation costs the
# emulator and the processor a fixed share (a Lambda round trip, a Firehose call, an S3 object, log
# lines) whatever its size; while every slot is busy messages wait and the next batch takes up to
# this many at once, so under load the pipeline makes few, big invocations (in ministack's profile at
# 1,800 msg/s the invoke path, Firehose and S3 are under 10 %), and at a low rate a message still
# leaves within the flush interval. Two slots, as the two cores of the machines we measure on.
DEFAULT_BATCH_SIZE = 500
DEFAULT_CONCURRENCY = 2
DEFAULT_FLUSH_INTERVAL_S = 0.05

Mode = Literal["sqs", "direct"]


@dataclass
class BridgeConfig:
    """One bridge: its rule, where it reads (the broker) and where it acts (queue or function)."""

    rule: Rule
    rule_name: str
    mode: Mode
    host: str
    port: int
    username: str
    password: str
    queue_url: str
    dlq_url: str
    function_name: str
    client_id: str = "rule-bridge"
    batch_size: int = DEFAULT_BATCH_SIZE
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S
    concurrency: int = DEFAULT_CONCURRENCY
    max_receive_count: int = 5
    # direct mode: how long a failed record waits at most before its next delivery, as in SQS
    visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S
    # QoS 0 deliveries beyond this many waiting are dropped (QoS 1 is bounded by the broker's in-flight window)
    buffer_limit: int = 5000
    metrics_file: Path | None = None

    @property
    def retry_budget_s(self) -> float:
        """How long SQS keeps redelivering a failed record before its redrive policy moves it."""
        return self.visibility_timeout_s * max(self.max_receive_count - 1, 0)


# A record's id only has to be unique among what this bridge delivers: one random prefix per process
# and a counter cost a tenth of a uuid4 per message.
_RECORD_ID_PREFIX = uuid.uuid4().hex
_RECORD_NUMBERS = itertools.count()


@dataclass
class Item:
    """A message between its arrival from the broker and its acknowledgement."""

    mid: int
    qos: int
    # the broker connection it arrived on: a packet id means nothing on any other connection
    generation: int
    message: Message
    body: str = ""
    record_id: str = field(default_factory=lambda: f"{_RECORD_ID_PREFIX}-{next(_RECORD_NUMBERS)}")
    attempts: int = 0
    first_failed: float = 0.0
    # acknowledged to the broker or dead-lettered: nothing may act on it again
    settled: bool = False


@dataclass
class BridgeMetrics:
    """What the bridge did, counted across its threads."""

    received: int = 0
    # of those, publishes to the rule's Basic Ingest topic (AWS charges them no messaging)
    basic_ingest: int = 0
    forwarded: int = 0
    filtered: int = 0
    rule_errors: int = 0
    action_errors: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dropped_qos0: int = 0
    reconnects: int = 0
    sessions_lost: int = 0
    batches: int = 0
    lag_ms_total: float = 0.0
    # MQTT receive to the action's success, per forwarded message
    lag: LatencyHistogram = field(default_factory=LatencyHistogram)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: float) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def forwarded_after(self, lags_ms: list[float]) -> None:
        with self.lock:
            self.forwarded += len(lags_ms)
            self.lag_ms_total += sum(lags_ms)
            for lag_ms in lags_ms:
                self.lag.observe(lag_ms / 1000)

    def lag_histogram(self) -> LatencyHistogram:
        with self.lock:
            return self.lag.copy()

    def snapshot(self) -> dict[str, float]:
        with self.lock:
            done = self.forwarded + self.dead_lettered
            return {
                "received": self.received,
                "basic_ingest": self.basic_ingest,
                "forwarded": self.forwarded,
                "filtered": self.filtered,
                "rule_errors": self.rule_errors,
                "action_errors": self.action_errors,
                "retried": self.retried,
                "dead_lettered": self.dead_lettered,
                "dropped_qos0": self.dropped_qos0,
                "reconnects": self.reconnects,
                "sessions_lost": self.sessions_lost,
                "batches": self.batches,
                "mean_lag_ms": round(self.lag_ms_total / done, 1) if done else 0.0,
            }
