"""AWS IoT Core's quotas at a real Mosquitto, through the quota gate run as a process: a device over
100 publishes a second keeps its connection and gets about 100 PUBACKs a second; a second CONNECT
within the second, an oversized payload and bytes that are not MQTT close the connection; the
account's rate holds across connections; the ledger names each device, quota and message."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingress.quotas.limits import Quota
from simulator.fleet import parse_fleet
from simulator.run import live_run
from simulator.run_config import RunConfig
from testbed.lifecycle.backends.local_ingress import mosquitto_binary
from testbed.lifecycle.ports import LOOPBACK, free_port, wait_for_port

pytestmark = pytest.mark.e2e
START_S = 10.0


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    config = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    config.write_text(f"listener {port} {LOOPBACK}\nallow_anonymous true\nmax_queued_messages 100000\n")
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        assert wait_for_port(port, START_S), "mosquitto did not start"
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Gate:
    """`python -m ingress gate` in front of the broker, with its ledger."""

    def __init__(self, folder: Path, broker_port: int, *flags: str) -> None:
        self.ledger_file, port_file = folder / "ledger.json", folder / "port"
        where = ["--broker", f"{LOOPBACK}:{broker_port}", "--port", "0", "--port-file", str(port_file)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingress", "gate", *where, "--ledger", str(self.ledger_file), *flags],
            stderr=(folder / "gate.log").open("w"),
        )
        deadline = time.monotonic() + START_S
        while not port_file.exists() or not port_file.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, (folder / "gate.log").read_text()
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def ledger(self) -> dict[str, Any]:
        time.sleep(1.5)  # written once a second
        return dict(json.loads(self.ledger_file.read_text()))

    def stop(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(timeout=10) == 0


@pytest.fixture
def gate(mosquitto: int, tmp_path: Path) -> Iterator[Gate]:
    running = Gate(tmp_path, mosquitto)
    yield running
    running.stop()


class Device:
    """A paho client that records each PUBACK's second and whether it ever lost its connection."""

    def __init__(self, port: int, client_id: str | None = None) -> None:
        self.client_id = client_id or f"quota-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(0)  # unlimited: a throttled publish holds no slot forever
        self.acks: Counter[int] = Counter()
        self.connected = threading.Event()
        self.disconnects = 0
        self.client.on_connect = lambda *_: self.connected.set()
        self.client.on_publish = lambda *_: self.acks.update([int(time.monotonic())])
        self.client.on_disconnect = lambda *_: setattr(self, "disconnects", self.disconnects + 1)
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        assert self.connected.wait(START_S), "no CONNACK through the gate"

    def publish_at(self, rate: float, seconds: float, qos: int = 1, size: int = 50) -> int:
        """Publish `rate` messages a second for `seconds`, paced; how many were sent."""
        start, sent = time.monotonic(), 0
        while (elapsed := time.monotonic() - start) < seconds:
            if sent < elapsed * rate:
                body = json.dumps({"msg_id": sent, "pad": "x" * size})
                self.client.publish(f"sensors/{self.client_id}/telemetry", body, qos=qos)
                sent += 1
            else:
                time.sleep(0.001)
        return sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_device_over_100_a_second_keeps_its_connection_and_gets_about_100_pubacks_a_second(gate: Gate) -> None:
    device = Device(gate.port)
    sent = device.publish_at(150, 6)
    time.sleep(1)
    acked = sum(device.acks.values())
    full_seconds = sorted(device.acks)[1:-1]
    assert full_seconds, device.acks
    for second in full_seconds:
        assert 85 <= device.acks[second] <= 115, ("PUBACKs in one second, at AWS's 100", dict(device.acks))
    assert device.disconnects == 0 and device.client.is_connected(), "throttling never closes the connection"
    hits = gate.ledger()["devices"][device.client_id]
    assert hits["by_quota"] == {Quota.PUBLISH_RATE.value: sent - acked}, (sent, acked, hits)
    assert hits["msg_ids"] == [] and hits["first"] <= hits["last"], "QoS 1: sent again, not dropped"
    device.close()


def test_at_qos_0_the_dropped_messages_are_named_in_the_ledger(gate: Gate) -> None:
    device = Device(gate.port)
    sent = device.publish_at(150, 2, qos=0)
    hits = gate.ledger()["devices"][device.client_id]
    dropped = hits["by_quota"][Quota.PUBLISH_RATE.value]
    assert dropped > 0 and len(hits["msg_ids"]) == dropped and set(hits["msg_ids"]) <= set(range(sent))
    assert device.client.is_connected()
    device.close()


def test_a_device_silent_past_its_keep_alive_is_closed(gate: Gate) -> None:
    with socket.create_connection((LOOPBACK, gate.port), timeout=10) as raw:
        client_id = f"quiet-{uuid.uuid4().hex[:6]}".encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x01" + len(client_id).to_bytes(2, "big") + client_id  # keep alive 1 s
        raw.sendall(bytes([0x10, len(body)]) + body)
        assert raw.recv(4)[:1] == b"\x20", "a CONNACK"
        started = time.monotonic()
        assert raw.recv(16) == b"", "closed"
        assert time.monotonic() - started < 5, "within 1.5 times its keep alive (and the broker's own)"


def test_a_second_connect_within_the_second_is_refused_then_allowed(gate: Gate) -> None:
    first = Device(gate.port)
    first.close()
    with socket.create_connection((LOOPBACK, gate.port), timeout=5) as raw:
        client_id = first.client_id.encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
        raw.sendall(bytes([0x10, len(body)]) + body)
        assert raw.recv(16) == b"", "closed without a CONNACK"
    time.sleep(1.1)
    again = Device(gate.port, first.client_id)
    again.close()
    assert gate.ledger()["devices"][first.client_id]["by_quota"] == {Quota.CONNECT_RATE.value: 1}


def test_a_payload_over_128_kb_closes_the_connection_and_is_not_forwarded(gate: Gate) -> None:
    device = Device(gate.port)
    device.client.publish(f"sensors/{device.client_id}/telemetry", b"x" * (128 * 1024 + 1), qos=1)
    deadline = time.monotonic() + START_S
    while device.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    device.client.loop_stop()
    assert device.disconnects >= 1 and not device.acks
    ledger = gate.ledger()
    assert ledger["devices"][device.client_id]["by_quota"] == {Quota.PAYLOAD_SIZE.value: 1}
    assert ledger["forwarded_publishes"] == 0


@pytest.mark.parametrize(
    "hostile",
    [b"GET / HTTP/1.1\r\n\r\n", b"\x10\xff\xff\xff\xff\x01", b"\x30\x02\x00\x01", b"\x10\x05\x00\x04MQ"],
)
def test_bytes_that_are_not_mqtt_close_that_connection_and_no_other(gate: Gate, hostile: bytes) -> None:
    device = Device(gate.port)
    with socket.create_connection((LOOPBACK, gate.port), timeout=5) as raw:
        raw.sendall(hostile)
        raw.shutdown(socket.SHUT_WR)
        assert raw.recv(16) == b""
    device.client.publish(f"sensors/{device.client_id}/telemetry", b"{}", qos=1).wait_for_publish(5)
    assert sum(device.acks.values()) == 1 and device.disconnects == 0
    device.close()
    assert gate.ledger()["protocol_errors"] >= 1


def test_the_account_rate_holds_across_connections(mosquitto: int, tmp_path: Path) -> None:
    gate = Gate(tmp_path, mosquitto, "--account-publishes-per-s", "60")
    try:
        devices = [Device(gate.port) for _ in range(2)]
        threads = [threading.Thread(target=d.publish_at, args=(50, 5)) for d in devices]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(1)
        acked = sum(sum(d.acks.values()) for d in devices)
        assert 60 * 4 <= acked <= 60 * 6 + 10, ("60 a second for 5 s, a second's burst on top", acked)
        throttled = gate.ledger()["throttled"]
        assert set(throttled) == {Quota.ACCOUNT_RATE.value}, throttled
        for device in devices:
            device.close()
    finally:
        gate.stop()


def test_quotas_a_run_cannot_have_are_refused_at_start(mosquitto: int, tmp_path: Path) -> None:
    for flags in (["--publishes-per-s", "0"], ["--max-payload-bytes", "200000"], ["--connects-per-s", "nan"]):
        run = subprocess.run(
            [sys.executable, "-m", "ingress", "gate", "--broker", f"{LOOPBACK}:{mosquitto}", *flags],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 2 and flags[0] in run.stderr, run.stderr


def test_the_simulators_resends_deliver_what_the_quota_held_back_and_are_counted(gate: Gate) -> None:
    """A device at 150 msg/s for 5 s with a 1 s ack timeout: throttled publishes get no PUBACK, go
    again, and in the end every message is acknowledged on the one connection; each throttled
    publish was sent again, and the summary says how often, per device."""
    fleet = parse_fleet({"devices": [{"type": "environmental", "count": 1, "interval_s": 1 / 150}]})
    config = RunConfig(
        fleet=fleet, seed=4, key=b"k", duration_s=5, qos=1, port=gate.port, ack_timeout_s=1.0, drain_timeout_s=60
    )
    summary = live_run(config)
    assert summary["failed"] == 0 and summary["acknowledged"] == summary["publishes"] >= 700, summary["failed"]
    assert summary["reconnects"] == 0, "throttling never closed the connection"
    (device_id,) = summary["per_device"]
    throttled = gate.ledger()["devices"][device_id]["by_quota"][Quota.PUBLISH_RATE.value]
    assert throttled > 100, "150 a second for 5 s is over 100 a second"
    assert summary["resends"] == summary["per_device"][device_id]["resends"] >= throttled


def test_a_client_that_never_finishes_its_connect_is_closed(gate: Gate) -> None:
    """Half a CONNECT, then nothing (slowloris): the broker never sees it, the gate closes it itself."""
    with socket.create_connection((LOOPBACK, gate.port), timeout=30) as raw:
        raw.sendall(b"\x10\x20\x00\x04MQ")
        started = time.monotonic()
        assert raw.recv(16) == b""
        assert 5 < time.monotonic() - started < 20, "after the gate's CONNECT timeout (10 s)"
    assert gate.ledger()["protocol_errors"] >= 1
