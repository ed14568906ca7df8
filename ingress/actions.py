"""The rule's actions, on worker threads: `sqs` sends each batch to the ingest queue; `direct` plays
rule + queue + event source mapping, invoking the processor with SQS-shaped batches, redelivering
what it reports failed with SQS's timing and dead-lettering after the redrive limit. What SQS or
Lambda refuse for good, and what the rule cannot evaluate, goes to the DLQ as the error action's
document. Each message is settled once: acknowledged (through the session's `ack`) or dead-lettered.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Unpack

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from ingress.delivery import BridgeConfig, BridgeMetrics, Item
from telemetry.backoff import backoff_s
from telemetry.schema import ARRIVAL_ATTRIBUTE

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


def chunks(
    items: list[Item], max_count: int, max_bytes: int, overhead: int = 0, escaped: bool = False
) -> list[list[Item]]:
    """Split into requests under both a count and a size limit (one oversized item still gets its own).

    `escaped`: the bodies travel as JSON strings inside the request (an invoke's event), where
    escaping can double their size.
    """
    out: list[list[Item]] = []
    current: list[Item] = []
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


class Actions:
    """Deliver batches to the pipeline and settle each message: acknowledged by `ack` once its
    action succeeded, or dead-lettered; `clock` (monotonic seconds) times the redeliveries."""

    def __init__(
        self,
        config: BridgeConfig,
        sqs: QueueSender,
        lambda_client: FunctionInvoker,
        ack: Callable[[list[Item]], None],
        metrics: BridgeMetrics,
        stopping: threading.Event,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.sqs = sqs
        self.lambda_client = lambda_client
        self._ack = ack
        self.metrics = metrics
        self.stopping = stopping
        self.sleep = sleep
        self.clock = clock
        self.redeliveries: list[tuple[float, int, Item]] = []
        self.redelivery_lock = threading.Lock()
        self._sequence = itertools.count()

    def waiting(self) -> int:
        """Messages waiting to be delivered again."""
        with self.redelivery_lock:
            return len(self.redeliveries)

    def due_redeliveries(self, limit: int) -> list[Item]:
        """Up to `limit` messages whose time to be delivered again has come, the earliest first."""
        now = self.clock()
        due: list[Item] = []
        with self.redelivery_lock:
            while self.redeliveries and self.redeliveries[0][0] <= now and len(due) < limit:
                due.append(heapq.heappop(self.redeliveries)[2])
        return due

    def act(self, items: list[Item]) -> None:
        """One batch through the rule's action, in requests under the service's limits."""
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

    def _send_to_queue(self, items: list[Item]) -> None:
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
                        self.error_action(pending[index], "SqsAction", reason)
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

    def _refused(self, items: list[Item], action: str, exc: Exception, again: Callable[[list[Item]], None]) -> None:
        """A request refused for good: send each record on its own, so only the one at fault is an error."""
        if len(items) > 1:
            for item in items:
                again([item])
            return
        self.error_action(items[0], action, f"{_error_code(exc)}: {exc}"[:500])

    def _invoke(self, items: list[Item]) -> None:
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

    def _failed_delivery(self, items: list[Item]) -> None:
        """Count a delivery; dead-letter after `max_receive_count` once SQS's retry time is spent, else redeliver."""
        now = self.clock()
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

    def _sqs_record(self, item: Item) -> dict[str, Any]:
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

    def _done(self, items: list[Item]) -> None:
        if items:
            now = time.time() * 1000
            self.metrics.forwarded_after([now - it.message.received_ms for it in items])

    def error_action(self, item: Item, failed_action: str, reason: str) -> None:
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

    def _dead_letter(self, item: Item, body: str) -> None:
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
