"""toolkit/mqtt_io.py against a real Mosquitto: one write of many PUBACKs is what the broker takes as
each message's acknowledgement, read through the buffered socket."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingress.broker import LOOPBACK
from tests.e2e.brokers import private_mosquitto
from toolkit.mqtt_io import BufferedSocket, BulkClient, ack_all

MESSAGES = 300


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    with private_mosquitto(tmp_path, "max_inflight_messages 1000") as port:
        yield port


class Receiver:
    """A persistent-session subscriber that acknowledges by hand, as the rule bridge does."""

    def __init__(self, port: int, client_id: str) -> None:
        self.mids: list[int] = []
        self.payloads: list[bytes] = []
        self.subscribed = threading.Event()
        self.client = BulkClient(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=True
        )
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect(LOOPBACK, port)
        self.client.subscribe("bulk/#", qos=1)
        self.client.loop_start()
        assert self.subscribed.wait(10)
        assert isinstance(self.client.socket(), BufferedSocket), "plain TCP reads through the buffer"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.mids.append(msg.mid)
        self.payloads.append(bytes(msg.payload))

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while len(self.mids) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.mids) == count, f"{len(self.mids)} of {count} arrived"

    def close(self) -> None:
        time.sleep(0.5)  # the PUBACKs leave on paho's network thread
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, count: int) -> None:
    sender = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"s-{uuid.uuid4().hex[:6]}")
    sender.connect(LOOPBACK, port)
    sender.loop_start()
    infos = [sender.publish(f"bulk/{n % 7}", f"m{n}".encode(), qos=1) for n in range(count)]
    for info in infos:
        info.wait_for_publish(10)
    sender.disconnect()
    sender.loop_stop()


def test_one_write_acknowledges_every_message_and_the_broker_redelivers_only_the_rest(broker: int) -> None:
    client_id = f"bulk-{uuid.uuid4().hex[:6]}"
    first = Receiver(broker, client_id)
    publish(broker, MESSAGES)
    first.wait_for(MESSAGES)
    assert sorted(first.payloads) == sorted(f"m{n}".encode() for n in range(MESSAGES)), "every byte parsed in order"
    kept = first.mids[: MESSAGES // 2]
    ack_all(first.client, kept)
    first.close()
    second = Receiver(broker, client_id)  # the same session: the broker sends again what was not acknowledged
    second.wait_for(MESSAGES - len(kept))
    assert set(second.payloads) == set(first.payloads[MESSAGES // 2 :]), "exactly the unacknowledged half came back"
    ack_all(second.client, second.mids)
    second.close()
    third = Receiver(broker, client_id)
    time.sleep(1.0)
    third.close()
    assert third.mids == [], "everything acknowledged stays acknowledged"
