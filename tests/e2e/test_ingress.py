"""Device messages through the local broker and the rule bridge into the stores."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from simulator.devices import device_ids
from simulator.fleet import parse_fleet
from simulator.run import live_run
from simulator.run_config import RunConfig
from simulator.summary import RunSummary, acked_ids
from telemetry import new_message
from telemetry.credentials import broker_credentials, device_password
from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.ports import LOOPBACK
from testbed.lifecycle.processes import listening_sockets
from testbed.lifecycle.stack import Stack
from testbed.stores import Stores, wait_for
from tests.e2e import mqtt_cli
from tests.e2e.conftest import needs_iot_core

pytestmark = pytest.mark.e2e
WAIT_S = 60.0


@contextmanager
def ingress_mode(stack: Stack, mode: str) -> Iterator[None]:
    """Switch the stack's ingress to `mode` for the block, then back to the stack's own."""
    stack.use_ingress(mode)
    try:
        yield
    finally:
        stack.use_ingress(stack.ingress)


def backend_of(stack: Stack) -> EmbeddedBackend:
    if not isinstance(stack.backend, EmbeddedBackend):
        pytest.skip(f"this test drives the embedded backend's processes, not {stack.backend.name}'s containers")
    return stack.backend


def mosquitto_pub(stack: Stack, user: str, topic: str, payload: str, password: str | None = None) -> None:
    backend = backend_of(stack)
    password = password or device_password(backend.broker_secret(), user)
    mqtt_cli.mosquitto_pub(LOOPBACK, backend.mqtt_port, user, password, topic, payload)


def signed(signing_key: bytes, device_id: str, msg_id: int = 1) -> dict[str, Any]:
    return new_message(
        device_id=device_id,
        msg_id=msg_id,
        ts=int(time.time() * 1000),
        device_type="power_meter",
        firmware="3.0.1",
        readings={"voltage": (231.5, "V"), "current": (4.2, "A")},
        key=signing_key,
    )


def test_a_third_party_client_message_is_stored(stack: Stack, stores: Stores, signing_key: bytes) -> None:
    device = f"pub-{uuid.uuid4().hex[:8]}"
    backend_of(stack).provision_devices([device])
    message = signed(signing_key, device)
    mosquitto_pub(stack, device, f"sensors/{device}/telemetry", json.dumps(message))
    item = wait_for("the reading", lambda: stores.reading(device, message["ts"], 1), WAIT_S)
    assert item.readings["voltage"] == 231.5


def test_a_device_cannot_publish_to_another_devices_topic(stack: Stack, stores: Stores, signing_key: bytes) -> None:
    intruder, victim = f"pub-{uuid.uuid4().hex[:8]}", f"pub-{uuid.uuid4().hex[:8]}"
    backend_of(stack).provision_devices([intruder, victim])
    forged = signed(signing_key, victim, msg_id=7)
    mosquitto_pub(stack, intruder, f"sensors/{victim}/telemetry", json.dumps(forged))
    own = signed(signing_key, intruder, msg_id=8)
    mosquitto_pub(stack, intruder, f"sensors/{intruder}/telemetry", json.dumps(own))
    wait_for("the intruder's own message", lambda: stores.reading(intruder, own["ts"], 8), WAIT_S)
    assert stores.readings(victim) == [], "the broker's ACL dropped the publish to another device's topic"
    with pytest.raises(subprocess.CalledProcessError):
        mosquitto_pub(stack, intruder, f"sensors/{intruder}/telemetry", "{}", password="wrong")


def test_the_simulators_messages_are_all_stored(stack: Stack, stores: Stores, signing_key: bytes) -> None:
    prefix = f"sim{uuid.uuid4().hex[:6]}"
    fleet = parse_fleet({"devices": [{"type": "environmental", "count": 10, "interval_s": 0.5, "id_prefix": prefix}]})
    backend = backend_of(stack)
    backend.provision_devices([f"{prefix}-{n:05d}" for n in range(10)])
    summary = live_run(
        RunConfig(
            fleet=fleet,
            seed=4,
            key=signing_key,
            duration_s=4,
            qos=1,
            port=backend.mqtt_port,
            credentials=broker_credentials(backend.broker_secret()),
        )
    )
    acked = acked_ids(summary)
    assert summary["failed"] == 0 and len(acked) >= 60

    assert wait_for(
        "every acknowledged message",
        lambda: set(stores.stored_ids(summary["per_device"])) == acked or None,
        WAIT_S,
    )


def test_killing_the_bridge_mid_stream_loses_and_duplicates_nothing(
    stack: Stack, stores: Stores, signing_key: bytes
) -> None:
    backend = backend_of(stack)
    prefix = f"kill{uuid.uuid4().hex[:6]}"
    devices = [f"{prefix}-{n:05d}" for n in range(10)]
    backend.provision_devices(devices)
    fleet = parse_fleet({"devices": [{"type": "vibration", "count": 10, "interval_s": 0.2, "id_prefix": prefix}]})
    config = RunConfig(
        fleet=fleet,
        seed=9,
        key=signing_key,
        duration_s=8,
        qos=1,
        port=backend.mqtt_port,
        credentials=broker_credentials(backend.broker_secret()),
    )
    results: list[RunSummary] = []
    runner = threading.Thread(target=lambda: results.append(live_run(config)))
    runner.start()
    time.sleep(3)
    pid = backend.bridge.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # a crash: no chance to finish or acknowledge anything
    time.sleep(2)
    backend.bridge.pid_file.unlink()
    stack.use_ingress(stack.ingress)
    runner.join()
    (result,) = results
    acked = acked_ids(result)
    assert result["failed"] == 0 and len(acked) > 300

    wait_for(
        "every acknowledged message after the restart",
        lambda: set(stores.stored_ids(devices)) == acked or None,
        WAIT_S,
    )
    assert len(stores.stored_ids(devices)) == len(acked), "one item per message id"


def test_a_payload_the_rule_cannot_evaluate_goes_to_the_dlq_with_the_reason(stack: Stack) -> None:
    device = f"pub-{uuid.uuid4().hex[:8]}"
    backend_of(stack).provision_devices([device])
    mosquitto_pub(stack, device, f"sensors/{device}/telemetry", f"not json from {device}")
    sqs = stack.client("sqs")
    dlq = stack.outputs().dlq_url

    def find() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        docs = [json.loads(m["Body"]) for m in messages]
        return [d for d in docs if d.get("topic") == f"sensors/{device}/telemetry"]

    (document,) = wait_for("the error action's message in the DLQ", find, WAIT_S)
    assert base64.b64decode(document["base64OriginalPayload"]).decode() == f"not json from {device}"
    assert "not JSON" in document["failures"][0]["errorMessage"]


def test_sqs_mode_goes_through_the_queue_and_its_event_source_mapping(
    stack: Stack, stores: Stores, signing_key: bytes
) -> None:
    backend = backend_of(stack)
    with ingress_mode(stack, "sqs"):
        assert (backend.run_dir / "ingress-mode").read_text() == "sqs"
        device = f"pub-{uuid.uuid4().hex[:8]}"
        backend.provision_devices([device])
        message = signed(signing_key, device)
        mosquitto_pub(stack, device, f"sensors/{device}/telemetry", json.dumps(message))
        wait_for("the reading, via SQS", lambda: stores.reading(device, message["ts"], 1), WAIT_S)


def test_every_server_the_stack_started_listens_on_loopback_only(stack: Stack) -> None:
    backend = backend_of(stack)
    iot_core = {backend.iot_mqtt_port} if "iot" in backend.ingress_modes else set()
    servers = {
        backend.ministack: {backend.ministack_port, *iot_core},
        backend.mosquitto: {backend.mqtt_port},
    }
    for process, ports in servers.items():
        pid = process.pid()
        assert pid is not None, f"{process.name} runs"
        sockets = listening_sockets(pid)
        assert ports <= {port for _, port in sockets}, f"{process.name} listens on {sorted(ports)}: {sockets}"
        assert {address for address, _ in sockets} == {LOOPBACK}, f"{process.name} listens beyond loopback: {sockets}"


def test_iot_mode_uses_ministacks_broker_and_the_terraform_topic_rule(
    stack: Stack, stores: Stores, signing_key: bytes
) -> None:
    """Devices provisioned through the IoT API connect with their X.509 certificates over TLS, as on AWS."""
    needs_iot_core(stack)
    backend = backend_of(stack)
    with ingress_mode(stack, "iot"):
        assert backend.bridge.pid() is None, "no local rule bridge: the emulator's IoT rule routes"
        prefix = f"iot{uuid.uuid4().hex[:6]}"
        fleet = parse_fleet({"devices": [{"type": "cold_chain", "count": 5, "interval_s": 0.5, "id_prefix": prefix}]})
        backend.provision_devices(device_ids(fleet))
        target = backend.mqtt_target()
        assert target.port == backend.iot_mqtt_port and target.tls is not None and target.credentials is None
        summary = live_run(
            RunConfig(fleet=fleet, seed=2, key=signing_key, duration_s=3, qos=1, port=target.port, tls=target.tls)
        )
        acked = acked_ids(summary)
        assert summary["failed"] == 0 and len(acked) >= 25

        assert wait_for(
            "every message, via the emulator's topic rule",
            lambda: set(stores.stored_ids(summary["per_device"])) == acked or None,
            WAIT_S,
        )


def test_basic_ingest_publishes_reach_the_rule_as_on_aws(stack: Stack, stores: Stores, tmp_path: Any) -> None:
    """`simulator run --basic-ingest <rule>` publishes to $aws/rules/<rule>/sensors/<id>/telemetry;
    the rule sees the topic without the prefix (its topic(2) is the device id, which the signature
    covers, so a prefix left on would quarantine every message)."""
    backend = backend_of(stack)
    prefix = f"bi{uuid.uuid4().hex[:6]}"
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"devices:\n  - {{type: environmental, count: 3, interval_s: 0.5, id_prefix: {prefix}}}\n")
    devices = device_ids(parse_fleet({"devices": [{"type": "environmental", "count": 3, "id_prefix": prefix}]}))
    backend.provision_devices(devices)
    summary_file = tmp_path / "summary.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "simulator", "run", "--fleet", str(fleet), "--duration", "2",
            "--broker", f"{LOOPBACK}:{backend.mqtt_port}",
            "--broker-secret-file", str(backend.state_dir / "broker-secret"),
            "--basic-ingest", stack.outputs().iot_rule_name, "--summary", str(summary_file),
        ],
        env={**os.environ, "SIMULATOR_SIGNING_KEY": stack.signing_key().decode()},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary: RunSummary = json.loads(summary_file.read_text())
    acked = acked_ids(summary)
    assert len(acked) >= 9 and summary["failed"] == 0

    def all_stored() -> bool:
        return {(r.device_id, r.msg_id) for d in devices for r in stores.readings(d)} >= acked

    wait_for("every Basic Ingest reading, stored under its device", all_stored, WAIT_S)


def test_a_scenario_chooses_basic_ingest_and_its_run_reconciles(stack: Stack, run_scenario: Any) -> None:
    """`basic_ingest: true` in a scenario: every device publishes to the rule's Basic Ingest topic,
    which the bridge counts apart (AWS charges it no messaging), and the run loses nothing."""
    before = stack.backend.ingress_counters().get("basic_ingest", 0)
    # the scenario's defaults judge what was lost, not the latency: timing belongs to the bench
    run = run_scenario("smoke", duration_s=3, basic_ingest=True, expectations={})
    assert run.passed, run.failures
    acked = run.outcome.summary["acknowledged"]
    assert acked > 0
    assert stack.backend.ingress_counters()["basic_ingest"] - before >= acked
    report = json.loads((run.folder / "report.json").read_text())
    assert report["basic_ingest"] is True
    assert "run" in report["cost"], report["cost"]
    messaging = next(line for line in report["cost"]["run"]["lines"] if line["item"] == "iot.messages")
    assert messaging["quantity"] == 0 and "Basic Ingest" in messaging["basis"], "AWS charges it no messaging"


def test_a_device_cannot_publish_for_another_through_a_basic_ingest_topic(
    stack: Stack, stores: Stores, mqtt_device: Any
) -> None:
    """The broker's ACL lets a device use a rule's Basic Ingest prefix for its own topic only. Mosquitto
    acknowledges a denied MQTT 3.1.1 publish all the same, so the check is that nothing arrives: the
    bridge receives the device's own message (published after the forbidden one) and no other."""
    backend = backend_of(stack)
    rule, key = stack.outputs().iot_rule_name, stack.signing_key()
    attacker, victim = mqtt_device(), f"victim-{uuid.uuid4().hex[:6]}"
    forged = new_message(
        device_id=victim, msg_id=1, ts=int(time.time() * 1000), device_type="environmental",
        firmware="1.0.0", site="lab", readings={"temperature": (99.0, "C")}, key=key,
    )  # fmt: skip
    own = new_message(
        device_id=attacker.device_id, msg_id=1, ts=forged["ts"], device_type="environmental",
        firmware="1.0.0", site="lab", readings={"temperature": (21.0, "C")}, key=key,
    )  # fmt: skip
    received = backend.ingress_counters().get("received", 0)
    attacker.publish(forged, topic=f"$aws/rules/{rule}/sensors/{victim}/telemetry")
    attacker.publish(own, topic=f"$aws/rules/{rule}/sensors/{attacker.device_id}/telemetry")
    wait_for("the device's own reading", lambda: stores.reading(attacker.device_id, own["ts"], 1), WAIT_S)
    time.sleep(2)  # the bridge writes its counters every second
    assert backend.ingress_counters().get("received", 0) - received == 1, "only the device's own message arrived"
    assert stores.readings(victim) == []
