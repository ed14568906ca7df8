"""Local Mosquitto configuration: loopback listener, per-device credentials, an ACL per topic.

The ACL is the local twin of an IoT policy scoped with the thing name: a device may publish only
to `sensors/<its id>/telemetry`; the rule bridge may read every device's telemetry.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from telemetry.credentials import device_password
from telemetry.topics import BASIC_INGEST_PREFIX, DEVICE_TOPIC_TEMPLATE, DeviceTopic, basic_ingest_filter
from toolkit.iot_quotas import MAX_PAYLOAD_BYTES
from toolkit.settings import SETTINGS

LOOPBACK = "127.0.0.1"
BRIDGE_USER = "rule-bridge"
PBKDF2_ITERATIONS = 101  # what mosquitto_passwd writes for its $7$ (PBKDF2-SHA512) hashes
# AWS IoT Core refuses a message payload over 128 KB and a topic over 256 bytes; the broker
# refuses the same, the same way (it disconnects the client that sends a larger packet).
IOT_MAX_PAYLOAD_BYTES = MAX_PAYLOAD_BYTES
IOT_MAX_TOPIC_BYTES = 256
# fixed header (at most 5 bytes), topic length (2) and packet id (2)
MAX_PACKET_BYTES = IOT_MAX_PAYLOAD_BYTES + IOT_MAX_TOPIC_BYTES + 9
# Seconds between saves of the broker's state: a SIGKILL loses at most what arrived since.
AUTOSAVE_INTERVAL_S = 1
# Where packages put the broker outside PATH: Debian/Ubuntu, then Homebrew on Apple silicon and on Intel.
MOSQUITTO_LOCATIONS = ("/usr/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto", "/usr/local/sbin/mosquitto")
MOSQUITTO_INSTALL = (
    "make deps (it installs what is missing), or Debian/Ubuntu: sudo apt-get install mosquitto mosquitto-clients; "
    "Fedora: sudo dnf install mosquitto; macOS: brew install mosquitto"
)


# What the broker refuses, as Mosquitto logs it (each line starts with the epoch second): a packet
# over max_packet_size disconnects its client (AWS IoT does the same past 128 KB), a wrong password
# is refused at CONNECT.
REFUSALS = {
    "oversize packet": re.compile(r"^(\d+): Client \S+ disconnected due to oversize packet"),
    "not authorised": re.compile(r"^(\d+): Client \S+ disconnected, not authorised"),
}


def count_refusals(log: Path, since_s: float) -> dict[str, int]:
    """How many of each refusal the broker logged since `since_s` (epoch seconds); {} without a log."""
    found = dict.fromkeys(REFUSALS, 0)
    try:
        with log.open(errors="replace") as lines:
            for line in lines:
                for what, pattern in REFUSALS.items():
                    match = pattern.match(line)
                    if match and int(match.group(1)) >= int(since_s):
                        found[what] += 1
    except FileNotFoundError:
        return {}
    return {what: n for what, n in found.items() if n}


def find_mosquitto() -> str | None:
    """The broker binary: `$MOSQUITTO`, else on PATH, else where Debian's or Homebrew's package puts it."""
    configured = SETTINGS["MOSQUITTO"].raw()
    if configured:
        return configured if Path(configured).is_file() else None
    for candidate in (shutil.which("mosquitto"), *MOSQUITTO_LOCATIONS):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def password_entry(username: str, password: str, salt: bytes | None = None) -> str:
    """One line of a mosquitto password file ($7$: PBKDF2-SHA512)."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"{username}:$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def load_or_create_secret(path: Path) -> bytes:
    """The stack's broker secret, created once (0600) and kept with the stack's state."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(32).hex().encode())
        path.chmod(0o600)
    return path.read_bytes().strip()


class BrokerConfig:
    """The files of one local broker: mosquitto.conf, the password file and the ACL."""

    def __init__(
        self,
        directory: Path,
        port: int,
        secret: bytes,
        container_dir: PurePosixPath | None = None,
        device_topic: str = DEVICE_TOPIC_TEMPLATE,
    ) -> None:
        self.directory = directory
        self.port = port
        self.secret = secret
        # In a container (docker compose) the files are mounted here, and the broker listens on the
        # container's network; the host publishes its port on 127.0.0.1 only.
        self.container_dir = container_dir
        self.conf = directory / "mosquitto.conf"
        self.passwords = directory / "passwords"
        self.acl = directory / "acl"
        # each device's topic, `{device_id}` in it: checked here, as the ACL is made of it
        topic = DeviceTopic(device_topic)
        self.device_pattern = topic.pattern("%u")
        self.devices_filter = topic.pattern("+")

    def write(self, devices: Iterable[str] = ()) -> Path:
        """(Re)write every file; the bridge and the given devices get credentials."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "data").mkdir(exist_ok=True)
        users = [BRIDGE_USER, *sorted(set(devices))]
        self.passwords.write_text("".join(password_entry(u, device_password(self.secret, u)) + "\n" for u in users))
        self.acl.write_text(
            f"user {BRIDGE_USER}\ntopic read {self.devices_filter}\ntopic read {basic_ingest_filter('+')}\n\n"
            "# every other user is a device: it may publish to its own telemetry topic only, directly or\n"
            "# through a rule's Basic Ingest topic\n"
            f"pattern write {self.device_pattern}\n"
            f"pattern write {BASIC_INGEST_PREFIX}+/{self.device_pattern}\n"
        )
        for path in (self.passwords, self.acl):
            path.chmod(0o600)
        seen = self.container_dir or self.directory
        self.conf.write_text(
            (f"listener {self.port}\n" if self.container_dir else f"listener {self.port} {LOOPBACK}\n")
            + "allow_anonymous false\n"
            # a client id is its username, so nobody can take over another's session (the bridge's above all)
            "use_username_as_clientid true\n"
            f"max_packet_size {MAX_PACKET_BYTES}\n"
            f"password_file {seen / 'passwords'}\n"
            f"acl_file {seen / 'acl'}\n"
            # stay the user who started the stack (compose runs the container as that user), so the
            # files above stay readable and private
             + ("" if self.container_dir else f"user {getpass.getuser()}\n") + "persistence true\n"
            f"autosave_interval {AUTOSAVE_INTERVAL_S}\n"
            f"persistence_location {seen / 'data'}/\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 1000\n"
            "max_connections -1\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        return self.conf

    def add_devices(self, device_ids: Iterable[str]) -> bool:
        """Give these devices credentials too; True if the files changed (the broker must reload)."""
        known = self.known_devices()
        if set(device_ids) <= known:
            return False
        self.write(known | set(device_ids))
        return True

    def known_devices(self) -> set[str]:
        if not self.passwords.exists():
            return set()
        return {line.split(":", 1)[0] for line in self.passwords.read_text().splitlines() if line} - {BRIDGE_USER}
