"""The local broker's files (ingress/broker.py): the one place devices get credentials."""

from __future__ import annotations

from pathlib import Path

from ingress.broker import BRIDGE_USER, BrokerConfig


def test_devices_are_added_once_and_a_change_says_the_broker_must_reload(tmp_path: Path) -> None:
    broker = BrokerConfig(tmp_path, 1883, b"secret")
    broker.write()
    assert broker.add_devices(["a", "b"]) is True
    assert broker.add_devices(["b", "a"]) is False, "nothing new: no reload"
    assert broker.add_devices(["c"]) is True
    assert broker.known_devices() == {"a", "b", "c"}
    users = {line.split(":", 1)[0] for line in broker.passwords.read_text().splitlines()}
    assert users == {"a", "b", "c", BRIDGE_USER}
    assert "pattern write sensors/%u/telemetry" in broker.acl.read_text()


def test_the_acl_follows_the_device_topic_template(tmp_path: Path) -> None:
    broker = BrokerConfig(tmp_path, 1883, b"secret", device_topic="greenhouse/{device_id}/climate")
    broker.write(["a"])
    acl = broker.acl.read_text()
    assert "pattern write greenhouse/%u/climate\n" in acl
    assert "pattern write $aws/rules/+/greenhouse/%u/climate\n" in acl
    assert f"user {BRIDGE_USER}\ntopic read greenhouse/+/climate\n" in acl
    assert "sensors" not in acl
