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

A message the rule cannot evaluate, or that SQS or Lambda refuse for good (too large, not
UTF-8, characters SQS forbids), goes to the DLQ as the rule's error action would send it: no
payload can stop the bridge. A dependency that is down (the emulator restarting or paused) is
retried for as long as it takes, and the broker keeps everything unacknowledged meanwhile.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Unpack

import orjson
import paho.mqtt.client as mqtt
from botocore.exceptions import BotoCoreError, ClientError
from paho.mqtt.enums import CallbackAPIVersion

from ingress.broker import IOT_MAX_PAYLOAD_BYTES
from ingress.rule import Message, Rule
from telemetry.backoff import backoff_s
from telemetry.schema import ARRIVAL_ATTRIBUTE
from telemetry.topics import basic_ingest_filter, basic_ingest_topic
from toolkit.histogram import LatencyHistogram

if TYPE_CHECKING:
    from mypy_boto3_lambda.type_defs import InvocationRequestTypeDef
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestTypeDef, SendMessageRequestTypeDef

logger = logging.getLogger(__name__)

SEND_MESSAGE_BATCH_MAX = 10
# The ingest queue's MaximumMessageSize (the provider's default), for one message and for a whole batch.
SQS_MAX_MESSAGE_BYTES = 256 * 1024
# A synchronous Invoke's request payload limit.
LAMBDA_MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
# What an SQS event adds around each body (ids, attributes), counted against the invoke limit.
SQS_RECORD_OVERHEAD_BYTES = 1024
# Characters an SQS message body may hold (anything else: InvalidMessageContents).
SQS_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 5.0
# The first redelivery of a record the processor failed, doubling up to the visibility timeout.
REDELIVERY_BASE_S = 1.0
DEFAULT_VISIBILITY_TIMEOUT_S = 30.0
METRICS_INTERVAL_S = 10.0
AWS_ERRORS = (ClientError, BotoCoreError)
# The request can never succeed as sent: retrying it would spin forever.
PERMANENT_SQS_ERRORS = frozenset(
    {
        "AWS.SimpleQueueService.BatchRequestTooLong",
        "BatchRequestTooLong",
        "InvalidMessageContents",
        "MessageTooLong",
        "InvalidParameterValue",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
    }
)
PERMANENT_LAMBDA_ERRORS = frozenset({"RequestEntityTooLargeException", "InvalidRequestContentException"})
# The stack itself is wrong (function gone, no permission): waited out like an outage, but said loudly.
CONFIGURATION_ERRORS = frozenset(
    {"ResourceNotFoundException", "AccessDeniedException", "KMSAccessDeniedException", "AccessDenied"}
)

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
class _Item:
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


def backoff(attempt: int) -> float:
    """Before retry `attempt` of a call to AWS: full jitter up to the cap."""
    return backoff_s(attempt, BACKOFF_BASE_S, BACKOFF_CAP_S)


def body_problem(output: bytes) -> str | None:
    """Why SQS (and so the event the processor gets) cannot carry this payload, or None."""
    if len(output) > SQS_MAX_MESSAGE_BYTES:
        return f"payload of {len(output)} bytes exceeds SQS's {SQS_MAX_MESSAGE_BYTES} bytes"
    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"payload is not UTF-8 ({exc.reason} at byte {exc.start}); SQS carries text only"
    bad = SQS_FORBIDDEN.search(text)
    if bad is not None:
        return f"payload holds character U+{ord(bad.group()):04X}, which SQS does not accept"
    return None


def _error_code(exc: Exception) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""


def _log_failure(future: Future[None]) -> None:
    """A background error action that failed leaves its message unacknowledged: say why."""
    if future.exception() is not None:
        logger.error("error action failed; the message stays with the broker", exc_info=future.exception())


def chunks(
    items: list[_Item], max_count: int, max_bytes: int, overhead: int = 0, escaped: bool = False
) -> list[list[_Item]]:
    """Split into requests under both a count and a size limit (one oversized item still gets its own).

    `escaped`: the bodies travel as JSON strings inside the request (an invoke's event), where
    escaping can double their size.
    """
    out: list[list[_Item]] = []
    current: list[_Item] = []
    size = 0
    for item in items:
        item_size = len(orjson.dumps(item.body) if escaped else item.body.encode()) + overhead
        if current and (len(current) >= max_count or size + item_size > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        out.append(current)
    return out


class QueueSender(Protocol):
    """The SQS calls the bridge makes: the rule's SqsAction, and the error action's DLQ."""

    def send_message_batch(self, **kwargs: Unpack[SendMessageBatchRequestTypeDef]) -> Mapping[str, Any]: ...

    def send_message(self, **kwargs: Unpack[SendMessageRequestTypeDef]) -> Mapping[str, Any]: ...


class FunctionInvoker(Protocol):
    """The Lambda call the bridge makes in direct mode, as the event source mapping would."""

    def invoke(self, **kwargs: Unpack[InvocationRequestTypeDef]) -> Mapping[str, Any]: ...


class RuleBridge:
    """Subscribe, evaluate the rule, act in batches, acknowledge after the action succeeded."""

    def __init__(
        self,
        config: BridgeConfig,
        sqs: QueueSender,
        lambda_client: FunctionInvoker,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.sqs = sqs
        self.lambda_client = lambda_client
        self.sleep = sleep
        self.metrics = BridgeMetrics()
        # Unbounded: QoS 1 is bounded by the broker's in-flight window (it stops sending until we
        # acknowledge), QoS 0 by `buffer_limit`; paho's network thread must never block on it.
        self.inbox: queue.Queue[_Item] = queue.Queue()
        self.redeliveries: list[tuple[float, int, _Item]] = []
        self.redelivery_lock = threading.Lock()
        self._sequence = itertools.count()
        self.generation = 0
        self.subscribed = threading.Event()
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
        self.client.on_subscribe = lambda *_: self.subscribed.set()

    # MQTT side (paho's network thread): never raises, never blocks
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.error("broker refused the bridge: %s", reason)
            return
        if self.generation:
            self.metrics.add(reconnects=1)
            if not flags.session_present:
                # whatever the broker had queued for the bridge is gone: say so, loudly
                logger.error("the broker lost the bridge's session; messages queued in it are lost")
                self.metrics.add(sessions_lost=1)
        self.generation += 1
        filters = (self.config.rule.topic_filter, basic_ingest_filter(self.config.rule_name))
        client.subscribe([(topic_filter, 1) for topic_filter in filters])
        logger.info("subscribed to %s (connection %d)", " and ".join(filters), self.generation)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.qos == 0 and self.inbox.qsize() >= self.config.buffer_limit:
                self.metrics.add(received=1, dropped_qos0=1)
                return
            # a Basic Ingest publish reaches the rule with its prefix taken off, as on AWS
            basic = basic_ingest_topic(msg.topic, self.config.rule_name)
            message = Message(basic or msg.topic, bytes(msg.payload), "", int(time.time() * 1000))
            self.inbox.put_nowait(_Item(msg.mid, msg.qos, self.generation, message))
            self.metrics.add(received=1, basic_ingest=int(basic is not None))
        except Exception:
            logger.exception("could not take a message from the broker; it stays unacknowledged")

    def _ack(self, items: list[_Item]) -> None:
        """PUBACK what was handled, on the connection it came from (QoS 0 has nothing to acknowledge).

        After a reconnect the broker redelivers what was not acknowledged; acknowledging an old
        packet id on the new connection could acknowledge a different message, so it is skipped.
        """
        for item in items:
            if item.settled:
                continue
            item.settled = True
            if item.qos and item.generation == self.generation:
                self.client.ack(item.mid, item.qos)

    # dispatch (main thread)
    def run(self, until: Callable[[], bool] | None = None) -> None:
        self.client.connect_async(self.config.host, self.config.port, keepalive=30)
        self.client.loop_start()
        next_metrics = time.monotonic() + METRICS_INTERVAL_S
        next_snapshot = time.monotonic()
        try:
            while not self.stopping.is_set() and not (until and until()):
                try:
                    batch = self._collect()
                    if batch:
                        self._dispatch(batch)
                    if self.config.metrics_file is not None and time.monotonic() >= next_snapshot:
                        next_snapshot = time.monotonic() + 1.0
                        self._write_snapshot(self.config.metrics_file)
                except Exception:
                    logger.exception("bridge loop error; continuing (unacknowledged messages stay with the broker)")
                    self.sleep(BACKOFF_BASE_S)
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
        tmp.write_text(json.dumps({"at": time.time(), "queued": self.queued(), **self.metrics.snapshot()}))
        tmp.replace(path)

    def queued(self) -> int:
        """Messages received and not yet acted on: in the inbox, or waiting to be delivered again."""
        with self.redelivery_lock:
            waiting = len(self.redeliveries)
        return self.inbox.qsize() + waiting

    def stop(self) -> None:
        self.stopping.set()

    def _collect(self) -> list[_Item]:
        limit = SEND_MESSAGE_BATCH_MAX if self.config.mode == "sqs" else self.config.batch_size
        batch = self._due_redeliveries(limit)
        if not batch:
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

    def _due_redeliveries(self, limit: int) -> list[_Item]:
        now = time.monotonic()
        due: list[_Item] = []
        with self.redelivery_lock:
            while self.redeliveries and self.redeliveries[0][0] <= now and len(due) < limit:
                due.append(heapq.heappop(self.redeliveries)[2])
        return due

    def _dispatch(self, batch: list[_Item]) -> None:
        ready: list[_Item] = []
        filtered: list[_Item] = []
        for item in batch:
            if item.attempts:  # a redelivery: the rule already ran
                ready.append(item)
                continue
            if len(item.message.payload) > IOT_MAX_PAYLOAD_BYTES:
                # the broker's packet limit leaves room for the topic; AWS IoT counts the payload alone
                reason = f"payload of {len(item.message.payload)} bytes exceeds AWS IoT's {IOT_MAX_PAYLOAD_BYTES}"
                self._refuse(item, "RuleEvaluation", reason)
                continue
            if not self.config.rule.matches(item.message.topic):  # Basic Ingest to a topic outside FROM
                filtered.append(item)
                continue
            try:
                output = self.config.rule.apply(item.message)
            except Exception as exc:  # any failure of the rule on this payload is the payload's
                self._refuse(item, "RuleEvaluation", f"{type(exc).__name__}: {exc}"[:500])
                continue
            if output is None:
                filtered.append(item)
                continue
            problem = body_problem(output)
            if problem is not None:
                self._refuse(item, "SqsAction" if self.config.mode == "sqs" else "LambdaAction", problem)
                continue
            item.body = output.decode("utf-8")
            ready.append(item)
        if filtered:
            self.metrics.add(filtered=len(filtered))
            self._ack(filtered)
        if ready:
            self.metrics.add(batches=1)
            self.slots.acquire()
            future = self.executor.submit(self._act, ready)
            future.add_done_callback(lambda _: self.slots.release())

    def _refuse(self, item: _Item, failed_action: str, reason: str) -> None:
        """The error action, on a worker thread: a DLQ that is down must not stop the dispatch loop."""
        future = self.executor.submit(self._error_action, item, failed_action, reason)
        future.add_done_callback(_log_failure)

    # actions (worker threads)
    def _act(self, items: list[_Item]) -> None:
        try:
            if self.config.mode == "sqs":
                for chunk in chunks(items, SEND_MESSAGE_BATCH_MAX, SQS_MAX_MESSAGE_BYTES):
                    self._send_to_queue(chunk)
            else:
                for chunk in chunks(
                    items,
                    self.config.batch_size,
                    LAMBDA_MAX_SYNC_PAYLOAD_BYTES,
                    SQS_RECORD_OVERHEAD_BYTES,
                    escaped=True,
                ):
                    self._invoke(chunk)
        except Exception:
            unsettled = [it for it in items if not it.settled]
            logger.exception("action failed unexpectedly; %d message(s) will be delivered again", len(unsettled))
            self._failed_delivery(unsettled)

    def _send_to_queue(self, items: list[_Item]) -> None:
        pending = list(items)
        attempt = 0
        while pending and not self.stopping.is_set():
            try:
                response = self.sqs.send_message_batch(
                    QueueUrl=self.config.queue_url,
                    Entries=[{"Id": str(i), "MessageBody": it.body} for i, it in enumerate(pending)],
                )
            except AWS_ERRORS as exc:
                if _error_code(exc) in PERMANENT_SQS_ERRORS:
                    self._refused(pending, "SqsAction", exc, self._send_to_queue)
                    return
                logger.warning("SendMessageBatch failed (attempt %d), retrying: %s", attempt + 1, exc)
                failed = set(range(len(pending)))
            else:
                failed = set()
                for entry in response.get("Failed", []):
                    index = int(entry["Id"])
                    if entry.get("SenderFault"):
                        reason = f"SQS refused the message: {entry.get('Code')}: {entry.get('Message', '')}"
                        self._error_action(pending[index], "SqsAction", reason)
                    else:
                        failed.add(index)
                refused = {int(e["Id"]) for e in response.get("Failed", []) if e.get("SenderFault")}
                done = [it for i, it in enumerate(pending) if i not in failed and i not in refused]
                self._ack(done)
                self._done(done)
            pending = [it for i, it in enumerate(pending) if i in failed]
            if pending:
                self.metrics.add(retried=len(pending))
                attempt += 1
                self.sleep(backoff(attempt))

    def _refused(self, items: list[_Item], action: str, exc: Exception, again: Callable[[list[_Item]], None]) -> None:
        """A request refused for good: send each record on its own, so only the one at fault is an error."""
        if len(items) > 1:
            for item in items:
                again([item])
            return
        self._error_action(items[0], action, f"{_error_code(exc)}: {exc}"[:500])

    def _invoke(self, items: list[_Item]) -> None:
        """One delivery of these records to the processor, as the event source mapping makes it.

        A processor that cannot be reached (the emulator restarting, paused, throttling) is not a
        delivery: that is retried until it answers. A record it reports failed, or a function
        error, is one delivery; it comes back later, as SQS would make it visible again.
        """
        attempt = 0
        while not self.stopping.is_set():
            event = {"Records": [self._sqs_record(it) for it in items]}
            try:
                response = self.lambda_client.invoke(
                    FunctionName=self.config.function_name,
                    InvocationType="RequestResponse",
                    Payload=orjson.dumps(event),
                )
                payload = response["Payload"].read()
            except AWS_ERRORS as exc:
                if _error_code(exc) in PERMANENT_LAMBDA_ERRORS:
                    self._refused(items, "LambdaAction", exc, self._invoke)
                    return
                attempt += 1
                if _error_code(exc) in CONFIGURATION_ERRORS:
                    logger.error(
                        "the stack refuses the invocation (attempt %d); fix it, messages wait: %s", attempt, exc
                    )
                else:
                    logger.warning("processor unreachable (attempt %d), retrying: %s", attempt, exc)
                self.sleep(backoff(attempt))
                continue
            try:
                result = json.loads(payload or b"{}")
                if response.get("FunctionError"):
                    raise RuntimeError(f"processor error: {str(result)[:300]}")
                failed_ids = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
            except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
                logger.warning("processor invocation failed: %s", exc)
                failed_ids = {it.record_id for it in items}
            done = [it for it in items if it.record_id not in failed_ids]
            self._ack(done)
            self._done(done)
            self._failed_delivery([it for it in items if it.record_id in failed_ids])
            return

    def _failed_delivery(self, items: list[_Item]) -> None:
        """Count a delivery; dead-letter after `max_receive_count` once SQS's retry time is spent, else redeliver."""
        now = time.monotonic()
        for item in items:
            if item.settled:
                continue
            item.attempts += 1
            item.first_failed = item.first_failed or now
            spent = now - item.first_failed >= self.config.retry_budget_s
            if item.attempts >= self.config.max_receive_count and spent:
                self._dead_letter(item, item.body or item.message.payload.decode("utf-8", errors="replace"))
                continue
            delay = min(self.config.visibility_timeout_s, REDELIVERY_BASE_S * 2 ** (item.attempts - 1))
            with self.redelivery_lock:
                heapq.heappush(self.redeliveries, (now + delay, next(self._sequence), item))
        if items:
            self.metrics.add(retried=len(items))

    def _sqs_record(self, item: _Item) -> dict[str, Any]:
        """One record of an SQS event, as the event source mapping would deliver it."""
        return {
            "messageId": item.record_id,
            "receiptHandle": item.record_id,
            "body": item.body,
            "attributes": {
                "ApproximateReceiveCount": str(item.attempts + 1),
                "SentTimestamp": str(item.message.received_ms),
            },
            "messageAttributes": {
                ARRIVAL_ATTRIBUTE: {"stringValue": str(item.message.received_ms), "dataType": "Number"}
            },
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "local-rule-bridge",
            "awsRegion": "",
        }

    def _done(self, items: list[_Item]) -> None:
        if items:
            now = time.time() * 1000
            self.metrics.forwarded_after([now - it.message.received_ms for it in items])

    def _error_action(self, item: _Item, failed_action: str, reason: str) -> None:
        """What the rule's error action sends: the original payload (base64) and the failure."""
        document = {
            "ruleName": self.config.rule_name,
            "topic": item.message.topic,
            "clientId": item.message.client_id,
            "base64OriginalPayload": base64.b64encode(item.message.payload).decode(),
            "failures": [{"failedAction": failed_action, "errorMessage": reason}],
        }
        self.metrics.add(**{"rule_errors" if failed_action == "RuleEvaluation" else "action_errors": 1})
        self._dead_letter(item, json.dumps(document))

    def _dead_letter(self, item: _Item, body: str) -> None:
        """Keep the message in the DLQ, retrying until it is there; only then acknowledge it."""
        attempt = 0
        while not self.stopping.is_set():
            try:
                self.sqs.send_message(
                    QueueUrl=self.config.dlq_url,
                    MessageBody=body,
                    MessageAttributes={
                        ARRIVAL_ATTRIBUTE: {"DataType": "Number", "StringValue": str(item.message.received_ms)}
                    },
                )
            except AWS_ERRORS as exc:
                attempt += 1
                logger.warning("DLQ send failed (attempt %d): %s", attempt, exc)
                self.sleep(backoff(attempt))
                continue
            self.metrics.add(dead_lettered=1)
            self._ack([item])
            return
