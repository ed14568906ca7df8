"""The rule bridge: the local IoT Rules Engine between Mosquitto and the pipeline.

It subscribes at QoS 1 with a persistent session and acknowledges an MQTT message only once
its action succeeded, so a crash or restart loses nothing (the broker keeps what arrives
meanwhile). Two action modes, one processor contract (an SQS-shaped batch in,
batchItemFailures out):

- `sqs`: SendMessageBatch into the ingest queue; the emulator's event source mapping delivers
  batches to the processor, as on AWS.
- `direct`: the bridge plays rule + queue + event source mapping: it invokes the processor
  synchronously with batches, retries the records it reports failed with backoff, moves a
  record to the DLQ after the redrive limit, and bounds its concurrency.

A payload the rule cannot evaluate goes to the DLQ as the rule's error action would send it.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from botocore.exceptions import BotoCoreError, ClientError
from paho.mqtt.enums import CallbackAPIVersion

from ingress.rule import Message, Rule, RuleEvaluationError

logger = logging.getLogger(__name__)

SEND_MESSAGE_BATCH_MAX = 10
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 5.0
METRICS_INTERVAL_S = 10.0
AWS_ERRORS = (ClientError, BotoCoreError)

Mode = Literal["sqs", "direct"]


@dataclass
class BridgeConfig:
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
    batch_size: int = 100
    flush_interval_s: float = 0.05
    concurrency: int = 4
    max_receive_count: int = 5
    buffer_limit: int = 5000
    metrics_file: Path | None = None


@dataclass
class _Item:
    mid: int
    message: Message
    output: bytes | None = None
    record_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: int = 0


@dataclass
class BridgeMetrics:
    received: int = 0
    forwarded: int = 0
    filtered: int = 0
    rule_errors: int = 0
    retried: int = 0
    dead_lettered: int = 0
    lag_ms_total: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: float) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> dict[str, float]:
        with self.lock:
            done = self.forwarded + self.dead_lettered
            return {
                "received": self.received,
                "forwarded": self.forwarded,
                "filtered": self.filtered,
                "rule_errors": self.rule_errors,
                "retried": self.retried,
                "dead_lettered": self.dead_lettered,
                "mean_lag_ms": round(self.lag_ms_total / done, 1) if done else 0.0,
            }


def backoff(attempt: int) -> float:
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class RuleBridge:
    """Subscribe, evaluate the rule, act in batches, acknowledge after the action succeeded."""

    def __init__(
        self, config: BridgeConfig, sqs: Any, lambda_client: Any, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.config = config
        self.sqs = sqs
        self.lambda_client = lambda_client
        self.sleep = sleep
        self.metrics = BridgeMetrics()
        self.inbox: queue.Queue[_Item] = queue.Queue(maxsize=config.buffer_limit)
        self.stopping = threading.Event()
        self.executor = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="action")
        self.slots = threading.BoundedSemaphore(config.concurrency)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        self.client.username_pw_set(config.username, config.password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    # MQTT side (paho's network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.error("broker refused the bridge: %s", reason)
            return
        client.subscribe(self.config.rule.topic_filter, qos=1)
        logger.info("subscribed to %s", self.config.rule.topic_filter)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        item = _Item(msg.mid, Message(msg.topic, bytes(msg.payload), "", int(time.time() * 1000)))
        # A full inbox blocks here, so the bridge stops reading and the broker holds the rest.
        self.inbox.put(item)
        self.metrics.add(received=1)

    def _ack(self, items: list[_Item]) -> None:
        for item in items:
            self.client.ack(item.mid, 1)

    # dispatch (main thread)
    def run(self, until: Callable[[], bool] | None = None) -> None:
        self.client.connect_async(self.config.host, self.config.port, keepalive=30)
        self.client.loop_start()
        next_metrics = time.monotonic() + METRICS_INTERVAL_S
        next_snapshot = time.monotonic()
        try:
            while not self.stopping.is_set() and not (until and until()):
                batch = self._collect()
                if batch:
                    self._dispatch(batch)
                if self.config.metrics_file is not None and time.monotonic() >= next_snapshot:
                    next_snapshot = time.monotonic() + 1.0
                    self._write_snapshot(self.config.metrics_file)
                if time.monotonic() >= next_metrics:
                    next_metrics = time.monotonic() + METRICS_INTERVAL_S
                    logger.info("bridge metrics %s", json.dumps(self.metrics.snapshot()))
        finally:
            self.client.loop_stop()
            self.executor.shutdown(wait=True)
            self.client.disconnect()

    def _write_snapshot(self, path: Path) -> None:
        """The counters as JSON, replaced atomically, for live progress displays."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"at": time.time(), "queued": self.inbox.qsize(), **self.metrics.snapshot()}))
        tmp.replace(path)

    def stop(self) -> None:
        self.stopping.set()

    def _collect(self) -> list[_Item]:
        limit = SEND_MESSAGE_BATCH_MAX if self.config.mode == "sqs" else self.config.batch_size
        try:
            batch = [self.inbox.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.config.flush_interval_s
        while len(batch) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _dispatch(self, batch: list[_Item]) -> None:
        ready: list[_Item] = []
        filtered: list[_Item] = []
        errors: list[tuple[_Item, str]] = []
        for item in batch:
            try:
                item.output = self.config.rule.apply(item.message)
            except RuleEvaluationError as exc:
                errors.append((item, str(exc)))
                continue
            (ready if item.output is not None else filtered).append(item)
        if filtered:
            self.metrics.add(filtered=len(filtered))
            self._ack(filtered)
        for item, reason in errors:
            self._error_action(item, reason)
        if ready:
            self.slots.acquire()
            future = self.executor.submit(self._act, ready)
            future.add_done_callback(lambda _: self.slots.release())

    # actions (worker threads)
    def _act(self, items: list[_Item]) -> None:
        try:
            if self.config.mode == "sqs":
                self._send_to_queue(items)
            else:
                self._invoke(items)
        except Exception:
            logger.exception("action failed unexpectedly; %d message(s) stay unacknowledged", len(items))

    def _send_to_queue(self, items: list[_Item]) -> None:
        pending = list(items)
        attempt = 0
        while pending and not self.stopping.is_set():
            try:
                response = self.sqs.send_message_batch(
                    QueueUrl=self.config.queue_url,
                    Entries=[
                        {"Id": str(i), "MessageBody": (it.output or b"").decode()} for i, it in enumerate(pending)
                    ],
                )
                failed = {int(f["Id"]) for f in response.get("Failed", [])}
            except AWS_ERRORS as exc:
                logger.warning("SendMessageBatch failed (attempt %d): %s", attempt + 1, exc)
                failed = set(range(len(pending)))
            done = [it for i, it in enumerate(pending) if i not in failed]
            self._ack(done)
            self._done(done)
            pending = [it for i, it in enumerate(pending) if i in failed]
            if pending:
                self.metrics.add(retried=len(pending))
                attempt += 1
                self.sleep(backoff(attempt))

    def _invoke(self, items: list[_Item]) -> None:
        pending = list(items)
        attempt = 0
        while pending and not self.stopping.is_set():
            event = {"Records": [self._sqs_record(it) for it in pending]}
            try:
                response = self.lambda_client.invoke(
                    FunctionName=self.config.function_name,
                    InvocationType="RequestResponse",
                    Payload=json.dumps(event).encode(),
                )
                result = json.loads(response["Payload"].read() or b"{}")
                if response.get("FunctionError"):
                    raise RuntimeError(f"processor error: {str(result)[:300]}")
                failed_ids = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
            except (*AWS_ERRORS, RuntimeError, ValueError) as exc:
                logger.warning("processor invocation failed (attempt %d): %s", attempt + 1, exc)
                failed_ids = {it.record_id for it in pending}
            done = [it for it in pending if it.record_id not in failed_ids]
            self._ack(done)
            self._done(done)
            retry = []
            for it in pending:
                if it.record_id in failed_ids:
                    it.attempts += 1
                    if it.attempts >= self.config.max_receive_count:
                        self._dead_letter(it, it.output or it.message.payload)
                    else:
                        retry.append(it)
            pending = retry
            if pending:
                self.metrics.add(retried=len(pending))
                attempt += 1
                self.sleep(backoff(attempt))

    def _sqs_record(self, item: _Item) -> dict[str, Any]:
        """One record of an SQS event, as the event source mapping would deliver it."""
        return {
            "messageId": item.record_id,
            "receiptHandle": item.record_id,
            "body": (item.output or b"").decode(errors="surrogateescape"),
            "attributes": {
                "ApproximateReceiveCount": str(item.attempts + 1),
                "SentTimestamp": str(item.message.received_ms),
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "local-rule-bridge",
            "awsRegion": "",
        }

    def _done(self, items: list[_Item]) -> None:
        if items:
            now = time.time() * 1000
            self.metrics.add(forwarded=len(items), lag_ms_total=sum(now - it.message.received_ms for it in items))

    def _error_action(self, item: _Item, reason: str) -> None:
        """What the rule's error action sends: the original payload (base64) and the failure."""
        document = {
            "ruleName": self.config.rule_name,
            "topic": item.message.topic,
            "clientId": item.message.client_id,
            "base64OriginalPayload": base64.b64encode(item.message.payload).decode(),
            "failures": [{"failedAction": "RuleEvaluation", "errorMessage": reason}],
        }
        self.metrics.add(rule_errors=1)
        self._dead_letter(item, json.dumps(document).encode())

    def _dead_letter(self, item: _Item, body: bytes) -> None:
        """Keep the message in the DLQ, retrying until it is there; only then acknowledge it."""
        attempt = 0
        while not self.stopping.is_set():
            try:
                self.sqs.send_message(QueueUrl=self.config.dlq_url, MessageBody=body.decode(errors="replace"))
            except AWS_ERRORS as exc:
                attempt += 1
                logger.warning("DLQ send failed (attempt %d): %s", attempt, exc)
                self.sleep(backoff(attempt))
                continue
            self.metrics.add(dead_lettered=1)
            self._ack([item])
            return
