"""The bridge's MQTT session and dispatch (ingress/bridge.py) without a network: paho's callbacks
called as paho calls them, acknowledgements recorded, the actions against in-memory SQS and Lambda
on a fake clock. What a real broker adds (persistence, redelivery after a crash) is in
tests/e2e/test_bridge_broker.py."""

from __future__ import annotations

import base64
import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.enums import MQTTErrorCode

from ingress.bridge import RuleBridge
from ingress.broker import IOT_MAX_PAYLOAD_BYTES
from ingress.delivery import Item, Mode
from ingress.rule import Message, parse_rule
from testbed.lifecycle.ports import free_port
from tests.unit.ingress.fakes import FakeLambda, FakeSqs, bridge_config
from tests.unit.ingress.test_actions import Clock
from toolkit.mqtt_io import PUBACK_TYPE


class PahoMessage:
    """What paho hands `on_message`: a topic, a payload, a QoS and a packet id."""

    def __init__(self, topic: str, payload: bytes, mid: int, qos: int = 1) -> None:
        self.topic, self.payload, self.qos, self.mid = topic, payload, qos, mid


class Reason:
    def __init__(self, failure: bool) -> None:
        self.is_failure = failure

    def __str__(self) -> str:
        return "Not authorized" if self.is_failure else "Success"


class Flags:
    def __init__(self, session_present: bool) -> None:
        self.session_present = session_present


class Session:
    def __init__(self, mode: Mode = "direct", sql: str = "SELECT * FROM 'sensors/+/telemetry'", **config: Any) -> None:
        self.sqs, self.lam, self.clock = FakeSqs(), FakeLambda(), Clock()
        settings = {"rule": parse_rule(sql), "flush_interval_s": 0.01, **config}
        self.bridge = RuleBridge(
            bridge_config(mode, **settings),
            self.sqs,
            self.lam,
            sleep=self.clock.sleep,
            clock=self.clock,
        )
        self.acks: list[int] = []
        self.subscribed: list[list[tuple[str, int]]] = []
        self.bridge.client._packet_queue = self._queue  # type: ignore[method-assign,assignment]
        self.bridge.client.subscribe = self._subscribe  # type: ignore[assignment]

    def _queue(self, command: int, packet: bytes, mid: int, qos: int, info: object = None) -> MQTTErrorCode:
        """What the bridge writes to the broker: PUBACKs only, read off the wire bytes."""
        assert command == PUBACK_TYPE and len(packet) % 4 == 0
        for at in range(0, len(packet), 4):
            kind, length, packet_id = struct.unpack_from("!BBH", packet, at)
            assert (kind, length) == (PUBACK_TYPE, 2)
            self.acks.append(packet_id)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _subscribe(self, topics: list[tuple[str, int]]) -> tuple[MQTTErrorCode, int]:
        self.subscribed.append(topics)
        return MQTTErrorCode.MQTT_ERR_SUCCESS, 1

    def connect(self, session_present: bool = False, failure: bool = False) -> None:
        self.bridge._on_connect(self.bridge.client, None, Flags(session_present), Reason(failure), None)

    def receive(self, topic: str, payload: bytes, mid: int, qos: int = 1) -> None:
        self.bridge._on_message(self.bridge.client, None, PahoMessage(topic, payload, mid, qos))  # type: ignore[arg-type]

    def dispatch(self) -> None:
        """Take what arrived and act on it, waiting for the worker threads."""
        batch = self.bridge._collect()
        self.bridge._dispatch(batch)
        self.bridge.executor.shutdown(wait=True)


def test_the_first_connection_subscribes_to_the_rule_and_its_basic_ingest_topic() -> None:
    s = Session()
    s.connect()
    assert s.subscribed == [[("sensors/+/telemetry", 1), ("$aws/rules/telemetry/#", 1)]]
    assert s.bridge.generation == 1 and s.bridge.metrics.reconnects == 0


def test_a_refused_connection_subscribes_to_nothing(caplog: pytest.LogCaptureFixture) -> None:
    s = Session()
    s.connect(failure=True)
    assert s.subscribed == [] and s.bridge.generation == 0
    assert any("broker refused the bridge: Not authorized" in r.getMessage() for r in caplog.records)


def test_a_reconnect_is_counted_and_a_lost_session_said_loudly(caplog: pytest.LogCaptureFixture) -> None:
    s = Session()
    s.connect()
    s.connect(session_present=True)
    assert (s.bridge.metrics.reconnects, s.bridge.metrics.sessions_lost, s.bridge.generation) == (1, 0, 2)
    assert not any(r.levelname == "ERROR" for r in caplog.records)
    s.connect(session_present=False)
    assert (s.bridge.metrics.reconnects, s.bridge.metrics.sessions_lost, s.bridge.generation) == (2, 1, 3)
    assert any(r.levelname == "ERROR" and "lost the bridge's session" in r.getMessage() for r in caplog.records)
    assert len(s.subscribed) == 3, "each connection subscribes again"


def test_a_message_is_acknowledged_only_after_its_action_succeeded() -> None:
    s = Session()
    s.connect()
    s.lam.down = True
    s.bridge.actions.sleep = lambda seconds: setattr(s.lam, "down", False)
    s.receive("sensors/d1/telemetry", b'{"v": 1}', 7)
    assert s.acks == [] and s.bridge.queued() == 1
    s.dispatch()
    assert s.acks == [7] and s.lam.bodies == ['{"v":1}'] and s.bridge.queued() == 0
    assert s.bridge.metrics.received == 1 and s.bridge.metrics.batches == 1


def test_an_acknowledgement_goes_only_to_the_connection_the_message_came_on() -> None:
    s = Session()
    s.connect()
    old = Item(5, 1, 1, Message("t", b"{}"))
    s.connect(session_present=True)
    current, qos0, settled = Item(6, 1, 2, Message("t", b"{}")), Item(7, 0, 2, Message("t", b"{}")), None
    settled = Item(8, 1, 2, Message("t", b"{}"), settled=True)
    s.bridge._ack([old, current, qos0, settled])
    assert s.acks == [6], "an old packet id, QoS 0 and what was settled are not acknowledged"
    assert old.settled and current.settled and qos0.settled
    s.bridge._ack([current])
    assert s.acks == [6], "never twice"


def test_qos0_beyond_the_buffer_is_dropped_and_counted_while_qos1_always_waits() -> None:
    s = Session(buffer_limit=2)
    s.connect()
    for mid in range(1, 5):
        s.receive("sensors/d1/telemetry", b"{}", mid, qos=0)
    s.receive("sensors/d1/telemetry", b"{}", 9, qos=1)
    assert s.bridge.inbox.qsize() == 3 and s.bridge.metrics.dropped_qos0 == 2 and s.bridge.metrics.received == 5


def test_a_message_paho_hands_over_broken_is_logged_and_left_unacknowledged(caplog: pytest.LogCaptureFixture) -> None:
    s = Session()
    s.receive("sensors/d1/telemetry", None, 3)  # type: ignore[arg-type]
    assert s.bridge.inbox.qsize() == 0 and s.acks == []
    assert any("could not take a message" in r.getMessage() for r in caplog.records)


def test_a_basic_ingest_publish_loses_its_prefix_and_is_counted() -> None:
    s = Session()
    s.connect()
    s.receive("$aws/rules/telemetry/sensors/d1/telemetry", b'{"v": 1}', 1)
    s.receive("$aws/rules/other/sensors/d1/telemetry", b'{"v": 1}', 2)
    assert s.bridge.metrics.basic_ingest == 1
    assert [s.bridge.inbox.get().message.topic for _ in range(2)] == [
        "sensors/d1/telemetry",
        "$aws/rules/other/sensors/d1/telemetry",
    ]


def test_what_the_rule_filters_out_is_acknowledged_and_counted_not_sent() -> None:
    s = Session(sql="SELECT * FROM 'sensors/+/telemetry' WHERE v > 1")
    s.connect()
    s.receive("sensors/d1/telemetry", b'{"v": 1}', 1)
    s.receive("sensors/d1/telemetry", b'{"v": 2}', 2)
    s.receive("$aws/rules/telemetry/elsewhere/d1", b'{"v": 5}', 3)
    s.dispatch()
    assert sorted(s.acks) == [1, 2, 3] and s.lam.bodies == ['{"v":2}']
    assert s.bridge.metrics.filtered == 2 and s.bridge.metrics.forwarded == 1


def test_a_payload_over_aws_iots_limit_goes_to_the_error_action() -> None:
    s = Session()
    s.connect()
    s.receive("sensors/d1/telemetry", b"x" * (IOT_MAX_PAYLOAD_BYTES + 1), 1)
    s.receive("sensors/d1/telemetry", b'{"v": "' + b"x" * (IOT_MAX_PAYLOAD_BYTES - 9) + b'"}', 2)
    s.dispatch()
    [document] = s.sqs.error_documents()
    assert document["failures"][0] == {
        "failedAction": "RuleEvaluation",
        "errorMessage": f"payload of {IOT_MAX_PAYLOAD_BYTES + 1} bytes exceeds AWS IoT's {IOT_MAX_PAYLOAD_BYTES}",
    }
    assert sorted(s.acks) == [1, 2] and len(s.lam.bodies) == 1, "exactly at the limit is delivered"


def test_a_payload_the_rule_cannot_evaluate_goes_to_the_error_action() -> None:
    s = Session(sql="SELECT *, topic(2) AS device_id FROM 'sensors/+/telemetry'")
    s.connect()
    s.receive("sensors/d1/telemetry", b"not json", 1)
    s.dispatch()
    [document] = s.sqs.error_documents()
    assert document["failures"][0] == {
        "failedAction": "RuleEvaluation",
        "errorMessage": "RuleEvaluationError: payload is not JSON, so the SELECT cannot add fields to it",
    }
    assert (
        document["topic"] == "sensors/d1/telemetry"
        and base64.b64decode(document["base64OriginalPayload"]) == b"not json"
    )
    assert s.acks == [1] and s.bridge.metrics.rule_errors == 1


@pytest.mark.parametrize(("mode", "action"), [("sqs", "SqsAction"), ("direct", "LambdaAction")])
def test_a_body_sqs_cannot_carry_goes_to_the_error_action_of_the_modes_action(mode: Mode, action: str) -> None:
    s = Session(mode=mode)
    s.connect()
    s.receive("sensors/d1/telemetry", b"\x00 binary, passed through by SELECT *", 1)
    s.dispatch()
    [document] = s.sqs.error_documents()
    assert document["failures"][0] == {
        "failedAction": action,
        "errorMessage": "payload holds character U+0000, which SQS does not accept",
    }
    assert s.bridge.metrics.action_errors == 1 and s.sqs.sent == [] and s.lam.bodies == []


def test_a_redelivery_is_not_evaluated_again() -> None:
    s = Session(sql="SELECT * FROM 'sensors/+/telemetry' WHERE v > 1")
    s.connect()
    redelivery = Item(4, 1, 1, Message("sensors/d1/telemetry", b'{"v": 0}'), body='{"kept": 1}', attempts=1)
    s.bridge._dispatch([redelivery])
    s.bridge.executor.shutdown(wait=True)
    assert s.lam.bodies == ['{"kept": 1}'] and s.acks == [4]


@pytest.mark.parametrize(("mode", "limit"), [("sqs", 10), ("direct", 25)])
def test_a_batch_is_at_most_the_actions_size(mode: Mode, limit: int) -> None:
    s = Session(mode=mode, batch_size=25)
    for mid in range(1, 41):
        s.receive("sensors/d1/telemetry", b"{}", mid)
    assert len(s.bridge._collect()) == limit and s.bridge.inbox.qsize() == 40 - limit


def test_what_is_due_again_goes_before_what_arrived() -> None:
    s = Session()
    s.lam.fail = lambda body: True
    [again] = [Item(1, 1, 1, Message("sensors/d1/telemetry", b"{}"), body="{}")]
    s.bridge.actions.act([again])
    s.receive("sensors/d1/telemetry", b"{}", 2)
    assert s.bridge._collect()[0].mid == 2, "not due yet"
    s.receive("sensors/d1/telemetry", b"{}", 3)
    s.clock.now += 1.0
    assert [item.mid for item in s.bridge._collect()] == [1, 3], "a due redelivery first, then what arrived"


def test_an_empty_inbox_gives_an_empty_batch_after_a_short_wait() -> None:
    s = Session()
    started = time.monotonic()
    assert s.bridge._collect() == []
    assert 0.1 < time.monotonic() - started < 2.0


def test_the_snapshot_is_the_counters_and_the_queue_replaced_whole(tmp_path: Path) -> None:
    s = Session()
    s.receive("sensors/d1/telemetry", b"{}", 1)
    path = tmp_path / "bridge.json"
    s.bridge._write_snapshot(path)
    found = json.loads(path.read_text())
    assert found["queued"] == 1 and found["received"] == 1 and found["forwarded"] == 0
    assert abs(found["at"] - time.time()) < 5 and not path.with_suffix(".tmp").exists()


def test_the_loop_dispatches_writes_its_counters_and_stops_cleanly(tmp_path: Path) -> None:
    """Without a broker to reach (paho keeps trying in its thread): what arrives is acted on, the
    counters file is kept current, and `until` ends the loop with the action threads finished."""
    metrics = tmp_path / "bridge.json"
    s = Session(metrics_file=metrics)
    s.bridge.config.port = free_port()
    s.receive("sensors/d1/telemetry", b'{"v": 1}', 1)
    deadline = time.monotonic() + 20
    s.bridge.run(until=lambda: (bool(s.lam.bodies) and metrics.exists()) or time.monotonic() > deadline)
    assert s.lam.bodies == ['{"v":1}'] and s.acks == [1]
    assert json.loads(metrics.read_text())["received"] == 1
    with pytest.raises(RuntimeError, match="after shutdown"):  # the action threads finished with the loop
        s.bridge.executor.submit(print)


def test_stop_ends_the_loop(tmp_path: Path) -> None:
    s = Session()
    s.bridge.config.port = free_port()
    s.bridge.stop()
    started = time.monotonic()
    s.bridge.run()
    assert time.monotonic() - started < 5
