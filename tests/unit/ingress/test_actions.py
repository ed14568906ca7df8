"""The rule's actions (ingress/actions.py) on a fake clock, with in-memory SQS and Lambda: what is
sent where, in what shape and size, what is retried, redelivered when and dead-lettered after how
many deliveries, and that each message is settled exactly once."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from ingress.actions import (
    BACKOFF_CAP_S,
    LAMBDA_MAX_SYNC_PAYLOAD_BYTES,
    REDELIVERY_BASE_S,
    SEND_MESSAGE_BATCH_MAX,
    SQS_MAX_MESSAGE_BYTES,
    SQS_RECORD_OVERHEAD_BYTES,
    Actions,
    body_problem,
    chunks,
)
from ingress.delivery import BridgeMetrics, Item, Mode
from ingress.rule import Message
from telemetry.schema import ARRIVAL_ATTRIBUTE
from tests.unit.ingress.fakes import FakeLambda, FakeSqs, bridge_config, client_error, failing_first


class Clock:
    """Monotonic seconds that move only when a test (or the actions' sleep) moves them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Harness:
    def __init__(self, mode: Mode = "direct", **config: Any) -> None:
        self.clock = Clock()
        self.sqs, self.lam = FakeSqs(), FakeLambda()
        self.acked: list[int] = []
        self.metrics = BridgeMetrics()
        self.stopping = threading.Event()
        self.config = bridge_config(mode, **config)
        self.actions = Actions(
            self.config,
            self.sqs,
            self.lam,
            self.ack,
            self.metrics,
            self.stopping,
            sleep=self.clock.sleep,
            clock=self.clock,
        )

    def ack(self, items: list[Item]) -> None:
        for item in items:
            assert not item.settled, f"message {item.mid} settled twice"
            item.settled = True
            self.acked.append(item.mid)


def items(count: int, body: str = '{"v": 1}', start: int = 1) -> list[Item]:
    return [
        Item(mid, 1, 1, Message("sensors/d/telemetry", body.encode(), "d", 1_767_225_600_000), body=body)
        for mid in range(start, start + count)
    ]


def test_sqs_mode_sends_batches_of_at_most_ten_and_acknowledges_each_message_once() -> None:
    h = Harness("sqs")
    h.actions.act(items(25))
    assert h.acked == list(range(1, 26)) and len(h.sqs.sent) == 25
    assert h.metrics.forwarded == 25 and h.metrics.retried == 0 and h.clock.slept == []


def test_a_throttled_batch_is_retried_with_backoff_until_sqs_takes_it() -> None:
    h = Harness("sqs")
    errors = [client_error("ThrottlingException"), client_error("ServiceUnavailable")]
    h.sqs.batch_error = lambda bodies: errors.pop(0) if errors else None
    h.actions.act(items(3))
    assert h.acked == [1, 2, 3] and len(h.sqs.sent) == 3
    assert h.metrics.retried == 6, "each attempt's pending messages are counted"
    assert len(h.clock.slept) == 2 and all(0 <= s <= BACKOFF_CAP_S for s in h.clock.slept)
    assert h.sqs.dead == []


def test_an_entry_sqs_refuses_for_good_is_dead_lettered_and_the_rest_acknowledged() -> None:
    h = Harness("sqs")
    h.sqs.refuse = lambda body: "InvalidMessageContents" if "bad" in body else None
    batch = [*items(2), *items(1, body='{"bad": 1}', start=3)]
    h.actions.act(batch)
    assert sorted(h.acked) == [1, 2, 3] and len(h.sqs.sent) == 2
    document = h.sqs.error_documents()[0]
    assert document["failures"][0]["failedAction"] == "SqsAction"
    assert "InvalidMessageContents" in document["failures"][0]["errorMessage"]
    assert base64.b64decode(document["base64OriginalPayload"]) == b'{"bad": 1}'
    assert (h.metrics.action_errors, h.metrics.dead_lettered, h.metrics.forwarded) == (1, 1, 2)


def test_an_entry_that_failed_without_the_senders_fault_is_sent_again() -> None:
    h = Harness("sqs")
    first = {"done": False}

    def send_batch(**kwargs: Any) -> dict[str, Any]:
        entries = kwargs["Entries"]
        if not first["done"]:
            first["done"] = True
            h.sqs.sent += [e["MessageBody"] for e in entries[1:]]
            return {"Failed": [{"Id": entries[0]["Id"], "SenderFault": False, "Code": "InternalError"}]}
        h.sqs.sent += [e["MessageBody"] for e in entries]
        return {"Failed": []}

    h.sqs.send_message_batch = send_batch  # type: ignore[method-assign]
    h.actions.act(items(3))
    assert sorted(h.acked) == [1, 2, 3] and len(h.sqs.sent) == 3 and h.metrics.retried == 1


def test_a_whole_request_refused_for_good_is_split_so_only_the_culprit_is_dead_lettered() -> None:
    h = Harness("sqs")
    h.sqs.batch_error = lambda bodies: (
        client_error("AWS.SimpleQueueService.BatchRequestTooLong") if any("big" in b for b in bodies) else None
    )
    batch = [*items(2), *items(1, body='{"big": 1}', start=3)]
    h.actions.act(batch)
    assert sorted(h.acked) == [1, 2, 3] and len(h.sqs.sent) == 2
    [document] = h.sqs.error_documents()
    assert document["failures"][0]["errorMessage"].startswith("AWS.SimpleQueueService.BatchRequestTooLong: ")


def test_direct_mode_invokes_with_sqs_shaped_records() -> None:
    h = Harness("direct", batch_size=4)
    batch = items(6)
    h.actions.act(batch)
    calls = h.lam.requests
    assert [len(c["Payload"]["Records"]) for c in calls] == [4, 2]
    assert {c["FunctionName"] for c in calls} == {"processor"} and calls[0]["InvocationType"] == "RequestResponse"
    record = calls[0]["Payload"]["Records"][0]
    assert record["messageId"] == record["receiptHandle"] == batch[0].record_id
    assert record["body"] == '{"v": 1}' and record["eventSource"] == "aws:sqs"
    assert record["attributes"] == {"ApproximateReceiveCount": "1", "SentTimestamp": "1767225600000"}
    assert record["messageAttributes"][ARRIVAL_ATTRIBUTE] == {"stringValue": "1767225600000", "dataType": "Number"}
    assert h.acked == [1, 2, 3, 4, 5, 6] and h.metrics.forwarded == 6


def test_a_record_the_processor_fails_comes_back_later_as_sqs_would_make_it_visible() -> None:
    h = Harness("direct", max_receive_count=3, visibility_timeout_s=4.0)
    h.lam.fail = lambda body: "bad" in body
    [good], [bad] = items(1), items(1, body='{"bad": 1}', start=2)
    h.actions.act([good, bad])
    assert h.acked == [1] and h.actions.waiting() == 1 and h.metrics.retried == 1
    assert h.actions.due_redeliveries(10) == [], "not before its visibility delay"
    h.clock.now += REDELIVERY_BASE_S
    assert h.actions.due_redeliveries(10) == [bad] and h.actions.waiting() == 0
    assert bad.attempts == 1
    h.actions.act([bad])
    assert h.lam.requests[-1]["Payload"]["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    h.clock.now += REDELIVERY_BASE_S
    assert h.actions.due_redeliveries(10) == [], "the second delay doubles"
    h.clock.now += REDELIVERY_BASE_S
    assert h.actions.due_redeliveries(10) == [bad]


def test_a_record_is_dead_lettered_after_the_redrive_limit_and_sqss_retry_time() -> None:
    h = Harness("direct", max_receive_count=3, visibility_timeout_s=4.0)
    h.lam.fail = lambda body: True
    [bad] = items(1, body='{"bad": 1}')
    for delivery, delay in ((1, 1.0), (2, 2.0), (3, 4.0)):
        h.actions.act([bad])
        assert bad.attempts == delivery and h.sqs.dead == [] and h.actions.waiting() == 1
        h.clock.now += delay
        assert h.actions.due_redeliveries(1) == [bad]
    # three deliveries 3 s apart: SQS would still redeliver until 8 s (visibility x (limit - 1)) are spent
    h.clock.now += 1.0
    h.actions.act([bad])
    assert h.sqs.dead == ['{"bad": 1}'] and h.acked == [1] and h.metrics.dead_lettered == 1
    assert h.actions.waiting() == 0 and h.config.retry_budget_s == 8.0


def test_a_delay_never_exceeds_the_visibility_timeout() -> None:
    h = Harness("direct", max_receive_count=100, visibility_timeout_s=3.0)
    h.lam.fail = lambda body: True
    [bad] = items(1)
    for _ in range(6):
        h.actions.act([bad])
        h.clock.now += 3.0
        assert h.actions.due_redeliveries(1) == [bad], "due within the visibility timeout"


def test_redeliveries_come_earliest_first_and_at_most_the_limit() -> None:
    h = Harness("direct", max_receive_count=10)
    h.lam.fail = lambda body: True
    first, second, third = items(3)
    h.actions.act([first])
    h.clock.now += 0.5
    h.actions.act([second, third])
    h.clock.now += REDELIVERY_BASE_S
    assert h.actions.due_redeliveries(2) == [first, second]
    assert h.actions.due_redeliveries(2) == [third]


def test_a_function_error_fails_every_record_of_the_invocation() -> None:
    h = Harness("direct")

    def crashing(**kwargs: Any) -> dict[str, Any]:
        return {"FunctionError": "Unhandled", "Payload": type("B", (), {"read": lambda self: b'{"e": 1}'})()}

    h.lam.invoke = crashing  # type: ignore[method-assign]
    h.actions.act(items(3))
    assert h.acked == [] and h.actions.waiting() == 3 and h.metrics.retried == 3


@pytest.mark.parametrize("answer", [b"not json", b"[1]", b'{"batchItemFailures": [{"no": 1}]}'])
def test_an_answer_the_bridge_cannot_read_fails_the_records_not_the_bridge(answer: bytes) -> None:
    h = Harness("direct")
    h.lam.invoke = lambda **kw: {"Payload": type("B", (), {"read": lambda self: answer})()}  # type: ignore[method-assign]
    h.actions.act(items(2))
    assert h.acked == [] and h.actions.waiting() == 2


def test_an_empty_answer_means_every_record_succeeded() -> None:
    h = Harness("direct")
    h.lam.invoke = lambda **kw: {"Payload": type("B", (), {"read": lambda self: b""})()}  # type: ignore[method-assign]
    h.actions.act(items(2))
    assert h.acked == [1, 2]


def test_an_unreachable_processor_is_waited_out_not_counted_as_a_delivery() -> None:
    h = Harness("direct", max_receive_count=1)
    outage = [EndpointConnectionError(endpoint_url="http://x"), client_error("TooManyRequestsException")]
    h.lam.invoke = failing_first(h.lam.invoke, outage)  # type: ignore[method-assign]
    [item] = items(1)
    h.actions.act([item])
    assert h.acked == [1] and item.attempts == 0 and h.sqs.dead == [] and len(h.clock.slept) == 2


def test_a_stack_that_refuses_the_call_is_said_loudly_and_waited_out(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness("direct")
    h.lam.invoke = failing_first(h.lam.invoke, [client_error("AccessDeniedException")])  # type: ignore[method-assign]
    h.actions.act(items(1))
    assert h.acked == [1]
    assert any(r.levelname == "ERROR" and "refuses the invocation" in r.getMessage() for r in caplog.records)


def test_an_invocation_too_large_for_lambda_is_split_and_the_culprit_dead_lettered() -> None:
    h = Harness("direct")
    invoke = h.lam.invoke

    def limited(**kwargs: Any) -> dict[str, Any]:
        if b"huge" in kwargs["Payload"]:
            raise client_error("RequestEntityTooLargeException")
        return invoke(**kwargs)

    h.lam.invoke = limited  # type: ignore[method-assign]
    h.actions.act([*items(2), *items(1, body='{"huge": 1}', start=3)])
    assert sorted(h.acked) == [1, 2, 3] and len(h.lam.bodies) == 2
    [document] = h.sqs.error_documents()
    assert document["failures"] == [
        {"failedAction": "LambdaAction", "errorMessage": document["failures"][0]["errorMessage"]}
    ]
    assert document["failures"][0]["errorMessage"].startswith("RequestEntityTooLargeException: ")


def test_a_dlq_that_is_down_is_retried_until_it_takes_the_message_and_only_then_acknowledged() -> None:
    h = Harness("direct")
    outage = [client_error("ServiceUnavailable"), client_error("ServiceUnavailable")]
    send = h.sqs.send_message

    def flaky(**kwargs: Any) -> dict[str, Any]:
        if outage:
            assert h.acked == [], "not acknowledged before the DLQ has it"
            raise outage.pop(0)
        return send(**kwargs)

    h.sqs.send_message = flaky  # type: ignore[method-assign]
    [item] = items(1)
    h.actions.error_action(item, "RuleEvaluation", "bad SQL input")
    assert h.acked == [1] and len(h.clock.slept) == 2 and h.metrics.rule_errors == 1
    document = h.sqs.error_documents()[0]
    assert document == {
        "ruleName": "telemetry",
        "topic": "sensors/d/telemetry",
        "clientId": "d",
        "base64OriginalPayload": base64.b64encode(b'{"v": 1}').decode(),
        "failures": [{"failedAction": "RuleEvaluation", "errorMessage": "bad SQL input"}],
    }


def test_a_stopping_bridge_leaves_what_it_could_not_dead_letter_with_the_broker() -> None:
    h = Harness("direct")
    h.sqs.send_message = lambda **kw: (_ for _ in ()).throw(client_error("ServiceUnavailable"))  # type: ignore[method-assign]
    h.actions.sleep = lambda seconds: h.stopping.set()
    [item] = items(1)
    h.actions.error_action(item, "SqsAction", "x")
    assert h.acked == [] and not item.settled and h.metrics.dead_lettered == 0


def test_an_unexpected_error_redelivers_only_what_was_not_settled() -> None:
    h = Harness("direct", batch_size=2)
    invoke = h.lam.invoke
    calls = {"n": 0}

    def breaking(**kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("unexpected")
        return invoke(**kwargs)

    h.lam.invoke = breaking  # type: ignore[method-assign]
    batch = items(4)
    h.actions.act(batch)
    assert h.acked == [1, 2] and h.actions.waiting() == 2
    h.clock.now += REDELIVERY_BASE_S
    assert h.actions.due_redeliveries(10) == batch[2:]


def test_the_lag_of_each_forwarded_message_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness("sqs")
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.250)
    h.actions.act(items(2))
    assert h.metrics.snapshot()["mean_lag_ms"] == 250.0
    assert h.metrics.lag_histogram().cumulative()[-1] == ("+Inf", 2)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"x" * SQS_MAX_MESSAGE_BYTES, None),
        (b"x" * (SQS_MAX_MESSAGE_BYTES + 1), f"payload of {SQS_MAX_MESSAGE_BYTES + 1} bytes exceeds SQS's"),
        (b'{"a": "\xff"}', "payload is not UTF-8 (invalid start byte at byte 7)"),
        ('{"a": "\u0000"}'.encode(), "U+0000, which SQS does not accept"),
        ('{"a": "\ufffe"}'.encode(), "U+FFFE"),
        ('{"a": "\t\n\r é \U0001f600"}'.encode(), None),
    ],
)
def test_what_sqs_cannot_carry_is_named(payload: bytes, problem: str | None) -> None:
    found = body_problem(payload)
    assert found == problem if problem is None else (found is not None and problem in found)


def test_chunks_respect_both_the_count_and_the_size_and_an_oversized_item_goes_alone() -> None:
    small = items(5, body="x" * 10)
    assert [len(c) for c in chunks(small, 2, 1000)] == [2, 2, 1]
    assert [len(c) for c in chunks(small, 10, 25)] == [2, 2, 1], "20 bytes fit in 25, 30 do not"
    assert [len(c) for c in chunks(small, 10, 20)] == [2, 2, 1], "exactly at the limit fits"
    assert [len(c) for c in chunks(small, 10, 1000, overhead=990)] == [1, 1, 1, 1, 1]
    big = items(1, body="y" * 50)
    assert [len(c) for c in chunks([*big, *small[:1]], 10, 20)] == [1, 1]
    assert chunks([], 10, 10) == []


def test_escaped_bodies_are_measured_as_the_event_carries_them() -> None:
    quotes = items(2, body='"' * 10)  # each escapes to 22 bytes inside the event's JSON
    assert [len(c) for c in chunks(quotes, 10, 19)] == [1, 1] and [len(c) for c in chunks(quotes, 10, 20)] == [2]
    assert [len(c) for c in chunks(quotes, 10, 43, escaped=True)] == [1, 1]
    assert [len(c) for c in chunks(quotes, 10, 44, escaped=True)] == [2]


def test_the_limits_are_the_services() -> None:
    assert (SEND_MESSAGE_BATCH_MAX, SQS_MAX_MESSAGE_BYTES) == (10, 262_144)
    assert (LAMBDA_MAX_SYNC_PAYLOAD_BYTES, SQS_RECORD_OVERHEAD_BYTES) == (6_291_456, 1024)
