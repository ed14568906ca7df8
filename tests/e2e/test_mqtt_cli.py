"""The tests' mosquitto_pub against a private broker with passwords: the password never reaches argv."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingress.broker import BRIDGE_USER, BrokerConfig
from telemetry.credentials import device_password
from telemetry.topics import TELEMETRY_FILTER
from testbed.lifecycle.backends.local_ingress import mosquitto_binary
from testbed.lifecycle.ports import LOOPBACK, free_port, wait_for_port
from tests.e2e import mqtt_cli

pytestmark = pytest.mark.e2e
SECRET = b"broker-secret"
DEVICE = "cli-device"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    config = BrokerConfig(tmp_path_factory.mktemp("broker"), free_port(), SECRET)
    proc = subprocess.Popen(
        [mosquitto_binary(), "-c", str(config.write([DEVICE]))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for_port(config.port, 10), "mosquitto did not start"
        yield config.port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_password_authenticates_from_a_private_file_not_from_argv(
    broker: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = device_password(SECRET, DEVICE)
    seen: list[tuple[list[str], Path]] = []
    real_run = subprocess.run

    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        options = Path(kwargs["env"]["XDG_CONFIG_HOME"]) / mqtt_cli.OPTIONS_FILE
        seen.append((cmd, options))
        assert options.stat().st_mode & 0o077 == 0, "only its owner can read the password"
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    mqtt_cli.mosquitto_pub(LOOPBACK, broker, DEVICE, password, f"sensors/{DEVICE}/telemetry", "{}")
    ((cmd, options),) = seen
    assert not [arg for arg in cmd if password in arg], cmd
    assert not options.exists(), "the password file is gone with the publish"
    with pytest.raises(subprocess.CalledProcessError):
        mqtt_cli.mosquitto_pub(LOOPBACK, broker, DEVICE, "wrong", f"sensors/{DEVICE}/telemetry", "{}")


def test_any_payload_bytes_arrive_unchanged(broker: int) -> None:
    """The payload goes through stdin: bytes no command line can carry (NUL, invalid UTF-8) arrive as sent."""
    subscribed, received = threading.Event(), queue.Queue[bytes]()
    subscriber = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=BRIDGE_USER)
    subscriber.username_pw_set(BRIDGE_USER, device_password(SECRET, BRIDGE_USER))
    subscriber.on_connect = lambda client, *_: client.subscribe(TELEMETRY_FILTER, qos=1)
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.on_message = lambda _client, _userdata, message: received.put(bytes(message.payload))
    subscriber.connect(LOOPBACK, broker)
    subscriber.loop_start()
    try:
        assert subscribed.wait(10), "the subscription was not acknowledged"
        payload = b'{"a": "\x00\xff"}\x00\xfe' * 1000
        password = device_password(SECRET, DEVICE)
        mqtt_cli.mosquitto_pub(LOOPBACK, broker, DEVICE, password, f"sensors/{DEVICE}/telemetry", payload)
        assert received.get(timeout=10) == payload
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()
