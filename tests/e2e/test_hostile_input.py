"""The hostile-input corpus, published with mosquitto_pub as real devices through the running stack
in both bridge modes: each payload ends where the corpus says (quarantined with its reason, in
the DLQ through the rule's error action, or refused by the broker), none is stored, a valid
message sent after them is stored, and the bridge is still the process it was."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from ingress.broker import MAX_PACKET_BYTES
from telemetry.credentials import device_password
from testbed.lifecycle.ports import LOOPBACK
from testbed.lifecycle.stack import Stack
from testbed.stores import Stores, wait_for
from tests.e2e import mqtt_cli
from tests.e2e.hostile_corpus import CASES, DEAD_LETTERED, REFUSED, Case, base, victim
from tests.e2e.test_ingress import backend_of, ingress_mode

pytestmark = pytest.mark.e2e
WAIT_S = 90.0


def outcomes(
    stack: Stack, stores: Stores, devices: dict[str, Case], payloads: dict[str, bytes], since: float
) -> dict[str, set[str]]:
    """Where each device's hostile payload ended up."""
    found: dict[str, set[str]] = {device: set() for device in devices}
    for document in stores.quarantined(since=since - 5):
        for device in devices:
            if f'"device_id":"{device}"' in document["body"]:
                found[device].add(f"quarantined:{document['reason']}")
    documents = [letter.document for letter in stores.dead_letters(int(since * 1000) - 1000) if letter.document]
    for document in documents:
        for device, case in devices.items():
            if document["topic"] == case.topic(device) and (
                base64.b64decode(document["base64OriginalPayload"]) == payloads[device]
            ):
                found[device].add(DEAD_LETTERED)
    return found


@pytest.mark.parametrize("mode", ["direct", "sqs"])
def test_every_hostile_payload_ends_where_it_should_and_nothing_breaks(
    stack: Stack, stores: Stores, signing_key: bytes, mode: str
) -> None:
    backend = backend_of(stack)
    run = uuid.uuid4().hex[:6]
    devices = {f"hx{run}-{n:02d}": case for n, case in enumerate(CASES)}
    backend.provision_devices([*devices, f"hx{run}-valid"])
    secret = backend.broker_secret()
    with ingress_mode(stack, mode):
        bridge_pid = backend.bridge.pid()
        started = time.time()
        payloads: dict[str, bytes] = {}
        for device, case in devices.items():
            payloads[device] = case.build(device, signing_key)
            mqtt_cli.mosquitto_pub(
                LOOPBACK,
                backend.mqtt_port,
                device,
                device_password(secret, device),
                case.topic(device),
                payloads[device],
                check=case.outcome != REFUSED,
            )
        valid_device = f"hx{run}-valid"
        valid = base(valid_device, signing_key)
        mqtt_cli.mosquitto_pub(
            LOOPBACK,
            backend.mqtt_port,
            valid_device,
            device_password(secret, valid_device),
            f"sensors/{valid_device}/telemetry",
            json.dumps(valid).encode(),
        )
        wait_for("the valid message after the corpus", lambda: stores.reading(valid_device, valid["ts"], 1), WAIT_S)

        expected = {device: {case.outcome} - {REFUSED} for device, case in devices.items()}
        found: dict[str, set[str]] = {}

        def settled() -> bool:
            found.update(outcomes(stack, stores, devices, payloads, started))
            return found == expected

        try:
            wait_for("every hostile payload where the corpus says", settled, WAIT_S, interval_s=3)
        except TimeoutError:
            wrong = {
                f"{devices[d].name}": (sorted(expected[d]), sorted(found[d]))
                for d in devices
                if found[d] != expected[d]
            }
            pytest.fail(f"{len(wrong)} payload(s) ended elsewhere (expected, found): {wrong}")
        assert all(stores.readings(device) == [] for device in devices), "no hostile payload is ever stored"
        assert all(stores.readings(victim(device)) == [] for device in devices), "the ACL kept every victim safe"
        assert backend.bridge.pid() == bridge_pid, "no payload killed the bridge"
        # what the broker refused is counted where a user looks (the report reads the same count)
        oversize = sum(len(case.build(d, signing_key)) > MAX_PACKET_BYTES for d, case in devices.items())
        assert oversize and backend.broker_refusals(started).get("oversize packet", 0) >= oversize
