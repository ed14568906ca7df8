"""The local broker's files (ingress/broker.py): the one place devices get credentials."""

from __future__ import annotations

import getpass
import stat
from pathlib import Path, PurePosixPath

from ingress.broker import AUTOSAVE_INTERVAL_S, BRIDGE_USER, MAX_PACKET_BYTES, BrokerConfig


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


def directives(conf: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in conf.read_text().splitlines():
        name, _, value = line.partition(" ")
        found.setdefault(name, []).append(value)
    return found


def test_the_broker_listens_on_loopback_with_aws_iots_limits_and_keeps_what_it_holds(tmp_path: Path) -> None:
    broker = BrokerConfig(tmp_path, 18830, b"secret")
    conf = broker.write(["dev-1"])
    assert conf == tmp_path / "mosquitto.conf" and (tmp_path / "data").is_dir()
    found = directives(conf)
    assert found["listener"] == ["18830 127.0.0.1"]
    assert found["allow_anonymous"] == ["false"] and found["use_username_as_clientid"] == ["true"]
    assert found["max_packet_size"] == [str(MAX_PACKET_BYTES)]
    assert found["password_file"] == [str(tmp_path / "passwords")] and found["acl_file"] == [str(tmp_path / "acl")]
    assert found["user"] == [getpass.getuser()]
    assert found["persistence"] == ["true"] and found["autosave_interval"] == [str(AUTOSAVE_INTERVAL_S)]
    assert found["persistence_location"] == [f"{tmp_path / 'data'}/"]
    assert (found["max_queued_messages"], found["max_inflight_messages"]) == (["1000000"], ["1000"])
    assert found["max_connections"] == ["-1"] and found["log_type"] == ["error", "warning", "notice"]
    assert len(conf.read_text().splitlines()) == 16, "no directive beyond these"
    for private in (broker.passwords, broker.acl):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_in_a_container_the_broker_listens_on_every_interface_of_its_own_network(tmp_path: Path) -> None:
    broker = BrokerConfig(tmp_path, 1883, b"secret", container_dir=PurePosixPath("/mosquitto/config"))
    found = directives(broker.write())
    assert found["listener"] == ["1883"] and "user" not in found
    assert found["password_file"] == ["/mosquitto/config/passwords"]
    assert found["persistence_location"] == ["/mosquitto/config/data/"]


def test_each_user_gets_the_password_its_secret_derives_and_the_bridge_reads_every_device(tmp_path: Path) -> None:
    broker = BrokerConfig(tmp_path, 1883, b"secret")
    broker.write(["b", "a", "a"])
    users = [line.split(":", 1)[0] for line in broker.passwords.read_text().splitlines()]
    assert users == [BRIDGE_USER, "a", "b"]
    assert broker.acl.read_text() == (
        f"user {BRIDGE_USER}\ntopic read sensors/+/telemetry\ntopic read $aws/rules/+/#\n\n"
        "# every other user is a device: it may publish to its own telemetry topic only, directly or\n"
        "# through a rule's Basic Ingest topic\n"
        "pattern write sensors/%u/telemetry\n"
        "pattern write $aws/rules/+/sensors/%u/telemetry\n"
    )
