"""The first part of `make demo`: two real messages over MQTT through the deployed pipeline, with evidence."""

from __future__ import annotations

import json
import time
import uuid

from rich.console import Console
from rich.table import Table

from simulator.devices import Emitted
from simulator.transport import MqttFleet
from telemetry import new_message
from testbed.lifecycle.stack import Stack
from testbed.stores import Stores, WaitTimeout, wait_for

DEMO_TIMEOUT_S = 90.0


def publish(stack: Stack, device_id: str, payloads: list[bytes]) -> None:
    """Publish as the device over MQTT (QoS 1) to its own topic on the local broker."""
    backend = stack.backend
    backend.provision_devices([device_id])
    target = backend.mqtt_target()
    fleet = MqttFleet(
        target.host, target.port, qos=1, credentials=target.credentials, tls=target.tls, topic=backend.topic
    )
    fleet.connect(device_id)
    now = time.time()
    for n, payload in enumerate(payloads, start=1):
        fleet.send(Emitted(device_id, n, payload, now))
    deadline = time.monotonic() + 10
    while fleet.counters.acked < len(payloads) and time.monotonic() < deadline:
        fleet.poll(0.05)
    fleet.close()
    if fleet.counters.acked < len(payloads):
        raise WaitTimeout(f"the broker on port {target.port} did not acknowledge the demo messages")


def run_demo(stack: Stack, console: Console) -> bool:
    """Publish a valid, alert-worthy message and a forged one over MQTT; show where each ended up."""
    outputs = stack.outputs()
    key = stack.signing_key()
    device_id = f"demo-{uuid.uuid4().hex[:8]}"
    ts = int(time.time() * 1000)
    readings: dict[str, tuple[float | bool, str]] = {
        "temperature": (58.5, "C"),
        "humidity": (31.0, "%"),
        "pressure": (1012.5, "hPa"),
    }
    # msg 1 signed with the fleet's key, msg 2 forged: the same reading, another key
    message, forged = (
        new_message(
            device_id=device_id,
            msg_id=msg_id,
            ts=ts,
            device_type="environmental",
            firmware="1.0.0",
            site="demo",
            readings=readings,
            key=signing_key,
        )
        for msg_id, signing_key in ((1, key), (2, b"not-the-fleet-key"))
    )
    publish(stack, device_id, [json.dumps(message).encode(), json.dumps(forged).encode()])
    topic = stack.backend.topic.for_device(device_id)
    console.print(f"published {device_id}#1 (temperature 58.5 C) and a forged #2 to {topic}")

    stores = Stores.connect(outputs, stack.client, stack.alert_journal)
    item = wait_for("the reading in DynamoDB", lambda: stores.reading(device_id, ts, 1), DEMO_TIMEOUT_S)
    archived = wait_for(
        "the raw message in the archive bucket",
        lambda: [m for m in stores.archived_messages(since=ts / 1000 - 5) if m.get("device_id") == device_id],
        DEMO_TIMEOUT_S,
    )
    quarantined = wait_for(
        "the forged message in the quarantine",
        lambda: [q for q in stores.quarantined(since=ts / 1000 - 5) if device_id in q["body"]],
        DEMO_TIMEOUT_S,
    )
    alert = wait_for(
        "the alert on the alerts topic",
        lambda: [a for a in stores.drain_alerts() if a["device_id"] == device_id],
        DEMO_TIMEOUT_S,
    )
    table = Table(title="Where the demo messages ended up")
    table.add_column("store")
    table.add_column("evidence")
    table.add_row(
        f"DynamoDB {outputs.need('telemetry_table_name')}",
        f"sk={item.sk} temperature={item.readings['temperature']} lag={item.stored_at_ms - ts} ms",
    )
    table.add_row(
        f"S3 {outputs.need('archive_bucket_name')}/raw/",
        f"{len(archived)} archived line(s), msg_id={archived[0]['msg_id']}",
    )
    table.add_row(
        f"S3 {outputs.need('archive_bucket_name')}/quarantine/",
        f"reason={quarantined[0]['reason']} key={quarantined[0]['key']}",
    )
    table.add_row(
        f"SNS {outputs.need('alerts_topic_arn').rsplit(':', 1)[-1]}",
        f"{alert[0]['rule']} {alert[0]['reading']}={alert[0]['value']} severity={alert[0]['severity']}",
    )
    console.print(table)
    return True
