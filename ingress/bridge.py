"""The rule bridge: the local IoT Rules Engine between Mosquitto and the pipeline. This module is its
MQTT session and dispatch; the actions it takes are actions.py's.

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

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingress.actions import BACKOFF_BASE_S, SEND_MESSAGE_BATCH_MAX, Actions, FunctionInvoker, QueueSender, body_problem
from ingress.broker import IOT_MAX_PAYLOAD_BYTES
from ingress.delivery import BridgeConfig, BridgeMetrics, Item
from ingress.rule import Message
from telemetry.topics import basic_ingest_filter, basic_ingest_topic
from toolkit.mqtt_io import BulkClient, ack_all

logger = logging.getLogger(__name__)

METRICS_INTERVAL_S = 10.0


def _log_failure(future: Future[None]) -> None:
    """A background error action that failed leaves its message unacknowledged: say why."""
    if future.exception() is not None:
        logger.error("error action failed; the message stays with the broker", exc_info=future.exception())


class RuleBridge:
    """Subscribe, evaluate the rule, act in batches, acknowledge after the action succeeded."""

    def __init__(
        self,
        config: BridgeConfig,
        sqs: QueueSender,
        lambda_client: FunctionInvoker,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.sleep = sleep
        self.metrics = BridgeMetrics()
        # Unbounded: QoS 1 is bounded by the broker's in-flight window (it stops sending until we
        # acknowledge), QoS 0 by `buffer_limit`; paho's network thread must never block on it.
        self.inbox: queue.Queue[Item] = queue.Queue()
        self.generation = 0
        self.subscribed = threading.Event()
        self.stopping = threading.Event()
        self.actions = Actions(config, sqs, lambda_client, self._ack, self.metrics, self.stopping, sleep, clock)
        self.executor = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="action")
        self.slots = threading.BoundedSemaphore(config.concurrency)
        self.client = BulkClient(
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
            self.inbox.put_nowait(Item(msg.mid, msg.qos, self.generation, message))
            self.metrics.add(received=1, basic_ingest=int(basic is not None))
        except Exception:
            logger.exception("could not take a message from the broker; it stays unacknowledged")

    def _ack(self, items: list[Item]) -> None:
        """PUBACK what was handled, on the connection it came from (QoS 0 has nothing to acknowledge).

        After a reconnect the broker redelivers what was not acknowledged; acknowledging an old
        packet id on the new connection could acknowledge a different message, so it is skipped.
        """
        mids = []
        for item in items:
            if item.settled:
                continue
            item.settled = True
            if item.qos and item.generation == self.generation:
                mids.append(item.mid)
        ack_all(self.client, mids)

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
        return self.inbox.qsize() + self.actions.waiting()

    def stop(self) -> None:
        self.stopping.set()

    def _collect(self) -> list[Item]:
        limit = SEND_MESSAGE_BATCH_MAX if self.config.mode == "sqs" else self.config.batch_size
        batch = self.actions.due_redeliveries(limit)
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

    def _dispatch(self, batch: list[Item]) -> None:
        ready: list[Item] = []
        filtered: list[Item] = []
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
            future = self.executor.submit(self.actions.act, ready)
            future.add_done_callback(lambda _: self.slots.release())

    def _refuse(self, item: Item, failed_action: str, reason: str) -> None:
        """The error action, on a worker thread: a DLQ that is down must not stop the dispatch loop."""
        future = self.executor.submit(self.actions.error_action, item, failed_action, reason)
        future.add_done_callback(_log_failure)
