"""The rule bridge and the project's Mosquitto configuration, against a real broker on a free port.

AWS sits behind small in-memory doubles here, so each test can make SQS or Lambda refuse or
vanish on cue; the whole stack with the real emulator is exercised in test_hostile_input.py.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from botocore.exceptions import EndpointConnectionError
from paho.mqtt.enums import CallbackAPIVersion

from ingress.bridge import RuleBridge
from ingress.broker import (
    AUTOSAVE_INTERVAL_S,
    BRIDGE_USER,
    IOT_MAX_PAYLOAD_BYTES,
    MAX_PACKET_BYTES,
    BrokerConfig,
)
from ingress.delivery import BridgeConfig
from ingress.rule import parse_rule
from telemetry.credentials import device_password
from telemetry.topics import DEVICE_TOPIC_TEMPLATE
from testbed.lifecycle.backends.local_ingress import mosquitto_binary
from testbed.lifecycle.ports import LOOPBACK, free_port, wait_for_port
from testbed.stores import wait_for
from tests.unit.ingress.fakes import FakeLambda, FakeSqs, client_error

pytestmark = pytest.mark.e2e
SECRET = b"broker-secret-for-tests"
SQL = "SELECT *, topic(2) AS device_id FROM 'sensors/+/telemetry'"
WAIT_S = 20.0


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """The project's wait_for, polled fast: these waits are on in-process counters and a local broker."""
    wait_for(what, condition, timeout_s, interval_s=0.05)


@dataclass
class Broker:
    """Mosquitto with the stack's own configuration (passwords, ACL, limits, persistence)."""

    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    device_topic: str = DEVICE_TOPIC_TEMPLATE

    def start(self, devices: list[str]) -> None:
        config = BrokerConfig(self.directory, self.port, SECRET, device_topic=self.device_topic).write(devices)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stdout=log, stderr=log)
        assert wait_for_port(self.port, 10), "mosquitto did not start"

    @property
    def log(self) -> Path:
        """Where the broker logs, as the testbed's broker does (what `make logs` shows)."""
        return self.directory / "mosquitto.log"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker")
    broker.start(["dev-1", "dev-2"])
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class RunningBridge:
    bridge: RuleBridge
    thread: threading.Thread

    def stop(self) -> None:
        self.bridge.stop()
        self.thread.join(timeout=20)


def start_bridge(
    broker: Broker, sqs: FakeSqs, lam: FakeLambda, mode: str = "sqs", sql: str = SQL, **extra: Any
) -> RunningBridge:
    config = BridgeConfig(
        rule=parse_rule(sql),
        rule_name="telemetry",
        mode=mode,  # type: ignore[arg-type]
        host=LOOPBACK,
        port=broker.port,
        username=BRIDGE_USER,
        password=device_password(SECRET, BRIDGE_USER),
        queue_url="ingest",
        dlq_url="dlq",
        function_name="processor",
        **extra,
    )
    bridge = RuleBridge(config, sqs, lam)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    assert bridge.subscribed.wait(WAIT_S), "the bridge's subscription"
    return RunningBridge(bridge, thread)


@pytest.fixture
def running(broker: Broker) -> Iterator[tuple[RunningBridge, FakeSqs, FakeLambda]]:
    sqs, lam = FakeSqs(), FakeLambda()
    bridge = start_bridge(broker, sqs, lam)
    try:
        yield bridge, sqs, lam
    finally:
        bridge.stop()


def device(broker: Broker, user: str = "dev-1", client_id: str | None = None) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id or user)
    client.username_pw_set(user, device_password(SECRET, user))
    client.connect(LOOPBACK, broker.port)
    client.loop_start()
    wait_until("the device's connection", client.is_connected)
    return client


def publish(broker: Broker, payload: bytes, qos: int = 1, user: str = "dev-1", topic: str | None = None) -> None:
    client = device(broker, user)
    try:
        client.publish(topic or f"sensors/{user}/telemetry", payload, qos=qos).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def valid(n: int) -> bytes:
    return json.dumps({"device_id": "dev-1", "msg_id": n, "ok": True}).encode()


def delivered(sqs: FakeSqs, n: int) -> bool:
    with sqs.lock:
        return any(json.loads(b).get("msg_id") == n for b in sqs.sent)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[" * 100_000, "not JSON"),  # RecursionError in json.loads
        (b"[" * 1000 + b"]" * 1000, "not JSON"),
        ('{"a": 1}'.encode("utf-16"), "not JSON"),  # AWS IoT reads JSON as UTF-8 only
        (b'{"device_id": "\xff\xfe"}', "not JSON"),
        (b"\x00\x01\x02binary", "not JSON"),
        # a number longer than Python's int parsing limit is JSON, but not an object SELECT * can add to
        (b"1" * 5000, "needs a JSON object payload"),
    ],
    ids=["deep-nesting", "nested-arrays-few-kb", "utf-16", "invalid-utf-8", "binary", "huge-integer"],
)
def test_a_payload_the_rule_cannot_evaluate_goes_to_the_error_action_and_the_bridge_lives(
    broker: Broker, running: tuple[RunningBridge, FakeSqs, FakeLambda], payload: bytes, reason: str
) -> None:
    bridge, sqs, _ = running
    publish(broker, payload)
    publish(broker, valid(1))
    wait_until("the valid message after the hostile one", lambda: delivered(sqs, 1))
    (document,) = sqs.error_documents()
    assert base64.b64decode(document["base64OriginalPayload"]) == payload
    assert reason in document["failures"][0]["errorMessage"]
    assert bridge.thread.is_alive() and bridge.bridge.metrics.reconnects == 0


def test_a_crashed_bridge_does_not_meet_its_poison_message_again(broker: Broker) -> None:
    """The old crash loop: a poison message kept in the bridge's persistent session."""
    sqs, lam = FakeSqs(), FakeLambda()
    first = start_bridge(broker, sqs, lam)
    first.stop()
    publish(broker, b"[" * 100_000)  # queued in the session while the bridge is away
    publish(broker, valid(2))
    second = start_bridge(broker, sqs, lam)
    try:
        wait_until("the message queued behind the poison one", lambda: delivered(sqs, 2))
        assert len(sqs.error_documents()) == 1
    finally:
        second.stop()


def test_qos0_deliveries_are_not_acknowledged_so_the_broker_keeps_the_bridge(
    broker: Broker, running: tuple[RunningBridge, FakeSqs, FakeLambda]
) -> None:
    bridge, sqs, _ = running
    for n in range(20):
        publish(broker, valid(100 + n), qos=0)
    wait_until("every QoS 0 message", lambda: all(delivered(sqs, 100 + n) for n in range(20)))
    time.sleep(1)
    assert bridge.bridge.metrics.reconnects == 0, "a PUBACK for a QoS 0 delivery is a protocol error"


def test_a_teams_own_topic_layout_and_rule_each_device_publishes_only_on_its_own_topic(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "greenhouse", device_topic="greenhouse/{device_id}/climate")
    broker.start(["dev-1", "dev-2"])
    sqs = FakeSqs()
    bridge = start_bridge(broker, sqs, FakeLambda(), sql="SELECT topic(2) AS house, n FROM 'greenhouse/+/climate'")
    try:
        publish(broker, b'{"n": 1}', topic="greenhouse/dev-2/climate")  # dev-1 posing as dev-2
        publish(broker, b'{"n": 3}', topic="greenhouse/dev-1/climate")
        wait_until("dev-1's reading", lambda: bool(sqs.sent))
        time.sleep(0.5)  # the refused one was published first; anything of it would be in by now
        assert [json.loads(body) for body in sqs.sent] == [{"house": "dev-1", "n": 3}]
    finally:
        bridge.stop()
        broker.stop()


def test_a_device_cannot_take_over_the_bridges_session(
    broker: Broker, running: tuple[RunningBridge, FakeSqs, FakeLambda]
) -> None:
    bridge, sqs, _ = running
    intruder = device(broker, "dev-2", client_id=BRIDGE_USER)  # a device's password, the bridge's client id
    try:
        time.sleep(3)  # a taken-over bridge reconnects after 1 s and counts it
        assert bridge.bridge.metrics.reconnects == 0, "the broker must not hand the bridge's session to a device"
        publish(broker, valid(3))
        wait_until("a message through the untouched bridge", lambda: delivered(sqs, 3))
    finally:
        intruder.disconnect()
        intruder.loop_stop()


def test_a_payload_over_aws_iots_limit_is_refused_by_the_broker(
    broker: Broker, running: tuple[RunningBridge, FakeSqs, FakeLambda]
) -> None:
    _, sqs, _ = running
    disconnected = threading.Event()
    client = device(broker)
    client.on_disconnect = lambda *args: disconnected.set()
    oversized = json.dumps({"device_id": "dev-1", "msg_id": 9, "pad": "x" * MAX_PACKET_BYTES}).encode()
    client.publish("sensors/dev-1/telemetry", oversized, qos=1)
    assert disconnected.wait(10), "the broker disconnects a client that sends more than AWS IoT accepts"
    client.loop_stop()
    publish(broker, valid(4))
    wait_until("the next message", lambda: delivered(sqs, 4))
    assert not delivered(sqs, 9) and not sqs.error_documents()


def test_a_payload_just_over_aws_iots_limit_that_fits_the_packet_goes_to_the_error_action(
    broker: Broker, running: tuple[RunningBridge, FakeSqs, FakeLambda]
) -> None:
    """The broker's limit is on the whole packet (room for a 256-byte topic); AWS counts the payload."""
    _, sqs, _ = running
    payload = json.dumps({"device_id": "dev-1", "msg_id": 10, "pad": "x" * IOT_MAX_PAYLOAD_BYTES})[:-2] + '"}'
    publish(broker, payload.encode())
    publish(broker, valid(11))
    wait_until("the next message", lambda: delivered(sqs, 11))
    (document,) = sqs.error_documents()
    assert "exceeds AWS IoT's" in document["failures"][0]["errorMessage"] and not delivered(sqs, 10)


def test_what_sqs_refuses_for_good_goes_to_the_error_action_not_a_retry_loop(broker: Broker) -> None:
    sqs = FakeSqs(
        refuse=lambda body: "InvalidMessageContents" if json.loads(body)["msg_id"] == 66 else None,
        batch_error=lambda bodies: client_error("BatchRequestTooLong") if len(bodies) > 1 else None,
    )
    bridge = start_bridge(broker, sqs, FakeLambda())
    try:
        client = device(broker)
        for n in (65, 66, 67):
            client.publish("sensors/dev-1/telemetry", json.dumps({"msg_id": n}), qos=1)
        wait_until("the good neighbours", lambda: delivered(sqs, 65) and delivered(sqs, 67))
        wait_until("the refused message in the DLQ", lambda: len(sqs.error_documents()) == 1)
        (document,) = sqs.error_documents()
        assert json.loads(base64.b64decode(document["base64OriginalPayload"]))["msg_id"] == 66
        assert "InvalidMessageContents" in document["failures"][0]["errorMessage"]
        client.disconnect()
    finally:
        bridge.stop()


def test_direct_mode_waits_out_an_unreachable_processor_without_dead_lettering(broker: Broker) -> None:
    sqs, lam = FakeSqs(), FakeLambda(down=True)
    bridge = start_bridge(broker, sqs, lam, mode="direct", max_receive_count=2, visibility_timeout_s=1)
    try:
        for n in range(5):
            publish(broker, valid(200 + n))
        wait_until("several failed attempts", lambda: lam.calls >= 5)
        time.sleep(2 * bridge.bridge.config.retry_budget_s + 0.5)  # down for longer than SQS would have kept them
        lam.down = False
        wait_until("every message once the processor is back", lambda: len(lam.bodies) == 5)
        assert not sqs.dead, "an unreachable processor is not a delivery"
    finally:
        bridge.stop()


def test_direct_mode_dead_letters_a_failing_record_only_after_sqs_would(broker: Broker) -> None:
    sqs, lam = FakeSqs(), FakeLambda(fail=lambda body: json.loads(body)["msg_id"] == 300)
    bridge = start_bridge(broker, sqs, lam, mode="direct", max_receive_count=3, visibility_timeout_s=1.5)
    try:
        started = time.monotonic()
        publish(broker, valid(300))
        publish(broker, valid(301))
        wait_until("the failing record in the DLQ", lambda: bool(sqs.dead))
        waited = time.monotonic() - started
        assert waited >= bridge.bridge.config.retry_budget_s, f"dead-lettered after {waited:.1f} s"
        assert json.loads(sqs.dead[0])["msg_id"] == 300 and len(lam.bodies) == 1
    finally:
        bridge.stop()


def test_a_broker_crash_loses_nothing_the_bridge_held_and_the_bridge_follows_the_restart(broker: Broker) -> None:
    stalled = threading.Event()
    stalled.set()
    sqs = FakeSqs(batch_error=lambda bodies: EndpointConnectionError(endpoint_url="x") if stalled.is_set() else None)
    bridge = start_bridge(broker, sqs, FakeLambda())
    try:
        for n in range(400, 405):
            publish(broker, valid(n))
        time.sleep(1.5)  # the broker's autosave interval
        broker.stop(signal.SIGKILL)
        broker.start(["dev-1", "dev-2"])
        wait_until("the bridge's reconnection", lambda: bridge.bridge.metrics.reconnects >= 1, 60)
        stalled.clear()
        publish(broker, valid(405))
        wait_until(
            "every message, the ones held across the crash too", lambda: all(delivered(sqs, n) for n in range(400, 406))
        )
    finally:
        bridge.stop()


def test_what_the_broker_saved_survives_its_sigkill_while_the_bridge_is_away(broker: Broker) -> None:
    """The broker alone holds these (the bridge is stopped): only its autosave keeps them."""
    sqs = FakeSqs()
    start_bridge(broker, sqs, FakeLambda()).stop()  # the bridge's persistent session exists
    for n in range(500, 505):
        publish(broker, valid(n))
    # a few autosave intervals: on a loaded machine (a full `make test`) one second's margin was too
    # little for the broker to have written them (seen once in CI)
    time.sleep(AUTOSAVE_INTERVAL_S * 3 + 1)
    broker.stop(signal.SIGKILL)
    broker.start(["dev-1", "dev-2"])
    bridge = start_bridge(broker, sqs, FakeLambda())
    try:
        wait_until("every message the broker saved", lambda: all(delivered(sqs, n) for n in range(500, 505)))
    finally:
        bridge.stop()


def test_a_qos0_flood_into_a_stalled_bridge_is_dropped_and_counted_not_blocking_it(broker: Broker) -> None:
    """paho's network thread must never wait on the bridge: QoS 0 beyond the buffer is dropped (as
    QoS 0 allows), QoS 1 stays with the broker until the bridge can take it."""
    stalled = threading.Event()
    stalled.set()
    sqs = FakeSqs(batch_error=lambda bodies: EndpointConnectionError(endpoint_url="x") if stalled.is_set() else None)
    bridge = start_bridge(broker, sqs, FakeLambda(), buffer_limit=5, concurrency=1)
    try:
        client = device(broker)
        for n in range(600, 650):
            client.publish("sensors/dev-1/telemetry", valid(n), qos=0)
        client.publish("sensors/dev-1/telemetry", valid(700), qos=1).wait_for_publish(5)
        wait_until("the QoS 0 overflow counted", lambda: bridge.bridge.metrics.dropped_qos0 > 0)
        stalled.clear()
        wait_until("the QoS 1 message once the bridge can act", lambda: delivered(sqs, 700))
        assert bridge.bridge.metrics.reconnects == 0
        client.disconnect()
    finally:
        bridge.stop()
