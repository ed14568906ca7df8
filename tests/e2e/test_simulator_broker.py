"""The simulator against a real Mosquitto on a free port: what it says it sent, the broker delivered."""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingress.broker import BrokerConfig
from processor.signature import verify
from processor.validation import parse
from simulator.devices import Emitted, build_devices
from simulator.fleet import parse_fleet
from simulator.replay import replay
from simulator.run import dry_run, live_run
from simulator.run_config import RunConfig
from simulator.summary import acked_ids
from simulator.tls import DeviceCertificates, TlsError
from simulator.transport import CLOSE_WAIT_S, MqttFleet
from telemetry.credentials import broker_credentials
from testbed.lifecycle.backends.local_ingress import mosquitto_binary
from testbed.lifecycle.ports import LOOPBACK, free_port, wait_for_port
from tests.e2e.brokers import private_mosquitto
from tests.e2e.pki import TestCA

pytestmark = pytest.mark.e2e
MARKER_WAIT_S = 10.0
KEY = b"fleet-key"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with private_mosquitto(tmp_path_factory.mktemp("mosquitto"), "max_queued_messages 100000") as port:
        yield port


class Subscriber:
    """mosquitto_sub (a third-party client) recording every payload on `topic` (sensors/+/telemetry).

    It also follows a marker topic of its own: a marker seen in its output proves the subscription
    is in place (at start) and that everything published before it has arrived (at stop).
    """

    def __init__(self, port: int, out: Path, topic: str = "sensors/+/telemetry") -> None:
        binary = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
        self.port, self.out, self.marker = port, out, f"marker/{uuid.uuid4().hex}"
        topics = ["-t", topic, "-t", self.marker]
        self.proc = subprocess.Popen(
            [binary, "-h", LOOPBACK, "-p", str(port), "-q", "1", *topics, "-F", "%t %p"],
            stdout=out.open("w"),
            stderr=subprocess.DEVNULL,
        )
        self._wait_for_marker("start")

    def _wait_for_marker(self, name: str) -> None:
        publisher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        publisher.connect(LOOPBACK, self.port)
        publisher.loop_start()
        try:
            deadline = time.monotonic() + MARKER_WAIT_S
            while f"{self.marker} {name}" not in self.out.read_text():
                assert time.monotonic() < deadline, f"mosquitto_sub never saw the {name} marker"
                publisher.publish(self.marker, name, qos=1).wait_for_publish(5)
                time.sleep(0.05)
        finally:
            publisher.disconnect()
            publisher.loop_stop()

    def stop(self) -> list[tuple[str, str]]:
        self._wait_for_marker("stop")
        self.proc.terminate()
        self.proc.wait(timeout=5)
        lines = self.out.read_text().splitlines()
        return [tuple(line.split(" ", 1)) for line in lines if line and not line.startswith(self.marker)]  # type: ignore[misc]


def received_ids(lines: list[tuple[str, str]]) -> list[tuple[str, int]]:
    ids = []
    for topic, payload in lines:
        device = topic.split("/")[1]
        try:
            ids.append((device, int(json.loads(payload)["msg_id"])))
        except (ValueError, KeyError):
            ids.append((device, -1))
    return ids


FLEET = {
    "devices": [
        {"type": "environmental", "count": 20, "interval_s": 0.5},
        {"type": "cold_chain", "count": 5, "interval_s": 1.0},
    ]
}


@pytest.mark.parametrize(("qos", "pregenerate"), [(0, False), (1, False), (0, True)])
def test_every_acknowledged_message_reaches_a_subscriber(
    broker: int, tmp_path: Path, qos: int, pregenerate: bool
) -> None:
    sub = Subscriber(broker, tmp_path / "sub.txt")
    summary = live_run(
        RunConfig(
            fleet=parse_fleet(FLEET), seed=1, key=KEY, duration_s=4, qos=qos, port=broker, pregenerate=pregenerate
        )
    )
    received = received_ids(sub.stop())
    assert summary["failed"] == 0
    assert summary["acknowledged"] == summary["publishes"] >= 25 * 4
    assert sorted(received) == sorted(acked_ids(summary))
    assert summary["send_lateness_ms"]["p99"] < 1000


@pytest.mark.parametrize("pregenerate", [False, True], ids=["live", "pregenerated"])
def test_dropouts_reconnect_and_flush_their_backlog(broker: int, tmp_path: Path, pregenerate: bool) -> None:
    fleet = parse_fleet({**FLEET, "faults": {"dropout": {"probability": 0.05, "duration_s": 1.5}}})
    sub = Subscriber(broker, tmp_path / "sub.txt")
    summary = live_run(
        RunConfig(fleet=fleet, seed=2, key=KEY, duration_s=5, qos=1, port=broker, pregenerate=pregenerate)
    )
    received = received_ids(sub.stop())
    backlog = [
        (d, int(m))
        for d, rec in summary["per_device"].items()
        for m, tags in rec["faults"].items()
        if "backlog" in tags
    ]
    assert backlog, "some devices went offline and flushed their backlog"
    assert set(backlog) <= set(received)
    assert sorted(received) == sorted(acked_ids(summary))


def test_worker_processes_split_the_fleet(broker: int, tmp_path: Path) -> None:
    sub = Subscriber(broker, tmp_path / "sub.txt")
    summary = live_run(
        RunConfig(fleet=parse_fleet(FLEET), seed=3, key=KEY, duration_s=3, qos=1, port=broker, workers=2)
    )
    received = received_ids(sub.stop())
    assert len(summary["per_device"]) == 25
    assert sorted(received) == sorted(acked_ids(summary))


def test_an_unreachable_broker_fails_every_message_and_says_so() -> None:
    port = free_port()
    summary = live_run(
        RunConfig(fleet=parse_fleet(FLEET), seed=1, key=KEY, duration_s=1, qos=1, port=port, drain_timeout_s=1)
    )
    assert summary["publishes"] > 0
    assert summary["acknowledged"] == 0 and summary["failed"] == summary["publishes"]
    assert summary["failed_by_cause"] == {"unacked_at_end": summary["publishes"]}
    assert summary["refused_connections"] >= 25, "every device kept trying, and each failed attempt is counted"


def test_a_closed_fleet_disconnects_and_leaves_no_socket_behind(tmp_path: Path) -> None:
    """Thousands of devices closed at once would hold as many TIME_WAIT entries (the next run's
    connections would find no free port), or as many open sockets until the collector came: each
    device sends its DISCONNECT, and its socket closes at once with SO_LINGER 0."""
    log_settings = ("log_type all", f"log_dest file {tmp_path / 'broker.log'}", f"user {getpass.getuser()}")
    with private_mosquitto(tmp_path, *log_settings) as port:
        fleet = MqttFleet("127.0.0.1", port, qos=1)
        fleet.connect_many([f"linger-{n}" for n in range(20)])
        deadline = time.monotonic() + 10
        while fleet.connecting() and time.monotonic() < deadline:
            fleet.poll(0.05)
        assert fleet.counters.connected == 20
        ports = {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port}
        assert len(ports) == 20
        fleet.close()
        time.sleep(0.5)
        toward_broker = [c for c in psutil.net_connections("tcp") if c.raddr and c.raddr.port == port]
        left = [c for c in toward_broker if getattr(c.laddr, "port", None) in ports]
        assert left == [], "no device socket open or in TIME_WAIT"
    log = (tmp_path / "broker.log").read_text()
    assert all(f"Client linger-{n} disconnected." in log for n in range(20)), "each one said goodbye"


def test_a_broker_that_never_ends_the_connection_is_reset_after_the_wait() -> None:
    """A peer that takes the DISCONNECT and keeps the connection open: each socket is reset once
    CLOSE_WAIT_S has passed, and none is left open or in TIME_WAIT."""
    server = socket.create_server((LOOPBACK, 0))
    port, accepted = server.getsockname()[1], list[socket.socket]()
    threading.Thread(target=lambda: accepted.extend(server.accept()[0] for _ in range(5)), daemon=True).start()
    fleet = MqttFleet(LOOPBACK, port, qos=1)
    fleet.connect_many([f"stuck-{n}" for n in range(5)])
    deadline = time.monotonic() + 5
    while len(accepted) < 5 and time.monotonic() < deadline:
        fleet.poll(0.05)
    ports = {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port}
    started = time.monotonic()
    fleet.close()
    assert time.monotonic() - started >= CLOSE_WAIT_S
    toward_peer = [c for c in psutil.net_connections("tcp") if c.raddr and c.raddr.port == port]
    assert len(ports) == 5 and [c for c in toward_peer if getattr(c.laddr, "port", None) in ports] == []
    for peer in [*accepted, server]:
        peer.close()


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_devices_reconnect_after_a_broker_restart_and_resend_what_was_not_acknowledged(
    tmp_path: Path, signal_name: str
) -> None:
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} {LOOPBACK}\nallow_anonymous true\n")

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stderr=subprocess.DEVNULL)
        assert wait_for_port(port, 10), "mosquitto did not start"
        return proc

    brokers = [start()]
    result: dict[str, Any] = {}
    run = RunConfig(fleet=parse_fleet(FLEET), seed=5, key=KEY, duration_s=8, qos=1, port=port)
    runner = threading.Thread(target=lambda: result.update(live_run(run)))
    try:
        runner.start()
        time.sleep(3)
        brokers[0].send_signal(getattr(signal, signal_name))
        brokers[0].wait(timeout=10)
        time.sleep(1.5)
        brokers.append(start())
        runner.join(timeout=60)
    finally:
        for proc in brokers:
            proc.terminate()
            proc.wait(timeout=10)
    assert result["reconnects"] == 25, "every device came back by itself"
    assert result["failed"] == 0 and result["acknowledged"] == result["publishes"] >= 25 * 6


def test_replay_retimes_resigns_and_publishes_a_dry_run_trace(broker: int, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    fleet = parse_fleet(
        {
            "devices": [{"type": "power_meter", "count": 3, "interval_s": 1.0}],
            "faults": {"malformed": {"probability": 0.2, "kinds": ["invalid_json"]}},
        }
    )
    dry_run(RunConfig(fleet=fleet, seed=5, key=KEY, duration_s=6), trace)
    recorded = [json.loads(line) for line in trace.read_text().splitlines()]
    sub = Subscriber(broker, tmp_path / "sub.txt")
    started = time.time()
    summary = replay(trace, KEY, LOOPBACK, broker, qos=1, speed=3.0)
    lines = sub.stop()
    assert summary["acknowledged"] == len(recorded) == len(lines)
    assert time.time() - started < 6, "three times faster than recorded"
    for _, payload in lines:
        try:
            message = json.loads(payload)
        except ValueError:
            continue  # a recorded malformed payload, sent verbatim
        assert abs(message["ts"] / 1000 - started) < 10, "timestamps shifted to now"
        verify(parse(payload, arrival_ms=message["ts"], max_skew_ms=1000), (KEY,))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, TestCA]]:
    """Mosquitto with a plain listener for the subscriber and a TLS one that requires a device certificate.

    The certificate's common name becomes the username, and the ACL lets it publish only to its own
    topic: the local twin of AWS IoT Core's X.509 authentication with a thing-scoped policy.
    """
    folder = tmp_path_factory.mktemp("mosquitto-tls")
    ca = TestCA(folder / "ca")
    server_cert, server_key = ca.issue("broker", folder / "server", server=True)
    (folder / "acl").write_text("pattern write sensors/%u/telemetry\n")
    plain, tls = free_port(), free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        "per_listener_settings true\n"
        f"listener {plain} {LOOPBACK}\nallow_anonymous true\n"
        f"listener {tls} {LOOPBACK}\ncafile {ca.ca_file}\ncertfile {server_cert}\nkeyfile {server_key}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        f"acl_file {folder / 'acl'}\n"
        f"user {getpass.getuser()}\n"
    )
    proc = subprocess.Popen(
        [mosquitto_binary(), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for_port(tls, 10), "mosquitto did not start"
        yield plain, tls, ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)


TLS_FLEET = {"devices": [{"type": "environmental", "count": 24, "interval_s": 0.5}]}


def test_devices_publish_over_tls_with_their_own_certificates(
    tls_broker: tuple[int, int, TestCA], tmp_path: Path
) -> None:
    plain, tls, ca = tls_broker
    fleet = parse_fleet(TLS_FLEET)
    certs = tmp_path / "things"
    for device in build_devices(fleet, 1, KEY):
        ca.issue(device.device_id, certs)
    sub = Subscriber(plain, tmp_path / "sub.txt")
    summary = live_run(
        RunConfig(
            fleet=fleet, seed=1, key=KEY, duration_s=3, qos=1, port=tls, tls=DeviceCertificates(certs, ca.ca_file)
        )
    )
    received = received_ids(sub.stop())
    assert summary["failed"] == 0 and summary["acknowledged"] == summary["publishes"] >= 24 * 4
    assert sorted(received) == sorted(acked_ids(summary)), "the broker let each certificate publish to its topic"


def test_a_certificate_from_another_ca_is_refused(tls_broker: tuple[int, int, TestCA], tmp_path: Path) -> None:
    _, tls, ca = tls_broker
    fleet = parse_fleet(TLS_FLEET)
    rogue = TestCA(tmp_path / "rogue", name="rogue CA")
    for device in build_devices(fleet, 1, KEY):
        rogue.issue(device.device_id, tmp_path / "things")
    summary = live_run(
        RunConfig(
            fleet=fleet,
            seed=1,
            key=KEY,
            duration_s=1,
            qos=1,
            port=tls,
            drain_timeout_s=1,
            tls=DeviceCertificates(tmp_path / "things", ca.ca_file),
        )
    )
    assert summary["acknowledged"] == 0 and summary["failed"] == summary["publishes"] > 0


def test_a_device_without_a_certificate_is_named_before_anyone_connects(
    tls_broker: tuple[int, int, TestCA], tmp_path: Path
) -> None:
    _, tls, ca = tls_broker
    fleet = parse_fleet(TLS_FLEET)
    devices = build_devices(fleet, 1, KEY)
    for device in devices[:-1]:
        ca.issue(device.device_id, tmp_path / "things")
    config = RunConfig(
        fleet=fleet, seed=1, key=KEY, duration_s=1, port=tls, tls=DeviceCertificates(tmp_path / "things", ca.ca_file)
    )
    with pytest.raises(TlsError, match=devices[-1].device_id):
        live_run(config)


def test_a_paced_connection_never_exceeds_its_publish_rate(broker: int) -> None:
    """IoT Core's per-connection quota: a backlog of 100 leaves at the allowed rate, not at once."""
    sent: list[float] = []
    fleet = MqttFleet(LOOPBACK, broker, qos=1, max_rate_per_connection=50, on_send=lambda e, t: sent.append(t))
    fleet.connect("paced-00000")
    while fleet.connecting():
        fleet.poll(0.01)
    for n in range(100):
        fleet.send(Emitted("paced-00000", n, b"{}", time.time()))
    deadline = time.monotonic() + 10
    while fleet.counters.acked < 100 and time.monotonic() < deadline:
        fleet.poll(0.01)
    fleet.close()
    assert fleet.counters.acked == 100
    assert sent[-1] - sent[0] >= (100 - 5) / 50 * 0.95, "the backlog is spread over about two seconds"
    busiest = max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent)
    assert busiest <= 50 + 5, f"{busiest} sends in one second"


def test_replay_reaches_the_local_broker_with_device_passwords(tmp_path: Path) -> None:
    """The stack's own Mosquitto refuses anonymous devices: replay signs in as each of them."""
    trace = tmp_path / "trace.jsonl"
    fleet = parse_fleet({"devices": [{"type": "cold_chain", "count": 2, "interval_s": 1.0, "id_prefix": "rp"}]})
    dry_run(RunConfig(fleet=fleet, seed=8, key=KEY, duration_s=3), trace)
    secret, port = b"replay-secret", free_port()
    config = BrokerConfig(tmp_path / "broker", port, secret).write(["rp-00000", "rp-00001"])
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        assert wait_for_port(port, 10), "mosquitto did not start"
        summary = replay(trace, KEY, LOOPBACK, port, speed=5.0, credentials=broker_credentials(secret))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert summary["acknowledged"] == summary["publishes"] == len(trace.read_text().splitlines())
