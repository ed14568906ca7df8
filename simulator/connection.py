"""How devices reach a broker that is not the testbed's own: credentials, server-only TLS, the topic
each device publishes to, and unsigned payloads. One group of options serves `run` and `replay`.

The testbed's own brokers are covered by the defaults (per-device passwords derived from the local
broker's secret, or a certificate per device for IoT Core); a team's Mosquitto, EMQX or HiveMQ
usually wants one user for the fleet, TLS that checks only the server, and its own topic layout.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from simulator.exceptions import SimulatorError
from simulator.tls import DeviceCertificates, TlsError
from telemetry.credentials import broker_credentials
from telemetry.topics import DEVICE_TOPIC, DEVICE_TOPIC_TEMPLATE, DeviceTopic, TopicError

DEFAULT_TOPIC = DEVICE_TOPIC


class ConnectionOptionsError(SimulatorError):
    """The connection options contradict each other or name something unusable."""


class TlsContexts(Protocol):
    """What a fleet needs for TLS: each device's client context, and a check before anyone connects."""

    def context(self, device_id: str) -> ssl.SSLContext: ...

    def check(self, device_ids: list[str]) -> None: ...


@dataclass(frozen=True)
class ServerTls:
    """TLS that verifies the broker (against `ca_file`, else the system trust store); devices log in
    with a username and password, not certificates."""

    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if self.ca_file is not None and not self.ca_file.is_file():
            raise TlsError(f"CA file {self.ca_file} does not exist")

    def context(self, device_id: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def check(self, device_ids: list[str]) -> None:
        return None


def device_topic(template: str, basic_ingest_rule: str | None = None) -> DeviceTopic:
    """Each device's topic, `{device_id}` in it (or one topic for all), checked: it must name one
    topic, not a filter; with a Basic Ingest rule it goes behind `$aws/rules/<rule>/`."""
    try:
        return DeviceTopic(template, basic_ingest_rule)
    except TopicError as exc:
        raise ConnectionOptionsError(str(exc)) from None


def fleet_credentials(username: str, password: str) -> Callable[[str], tuple[str, str]]:
    """One login for every device; `{device_id}` in the username gives each its own."""
    return lambda device_id: (username.replace("{device_id}", device_id), password)


@dataclass(frozen=True)
class ConnectionOptions:
    host: str
    port: int
    credentials: Callable[[str], tuple[str, str]] | None
    tls: TlsContexts | None
    websocket_host: str | None
    topic: DeviceTopic
    sign: bool


def broker_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port") from None


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection (the testbed's broker by default; any MQTT broker)")
    group.add_argument("--broker", type=broker_address, default=("127.0.0.1", 1883), help="host:port")
    group.add_argument("--broker-secret-file", type=Path, help="the testbed's broker: device passwords derive from it")
    group.add_argument("--username", help="one login for the fleet ({device_id} in it: one per device)")
    group.add_argument("--password-file", type=Path, help="the password for --username (a file: not in `ps`)")
    group.add_argument("--tls", action="store_true", help="TLS that verifies the broker (with --ca-file)")
    group.add_argument("--certs", type=Path, help="TLS with per-device X.509 certificates from this folder (provision)")
    group.add_argument("--ca-file", type=Path, help="the broker's CA certificate (default: the system trust store)")
    group.add_argument("--websocket-host", help="MQTT over WebSocket (/mqtt) with this Host, e.g. an IoT endpoint")
    group.add_argument("--topic", default=DEVICE_TOPIC_TEMPLATE, help="each device's topic; {device_id} is replaced")
    group.add_argument(
        "--basic-ingest", metavar="RULE", help="publish to $aws/rules/RULE/<topic> (AWS IoT Basic Ingest)"
    )
    group.add_argument("--no-sign", action="store_true", help="send messages without the HMAC signature")


def connection_options(args: argparse.Namespace) -> ConnectionOptions:
    """The parsed options, each combination checked before anything connects."""
    chosen: Sequence[str] = [n for n in ("broker_secret_file", "username", "certs") if getattr(args, n) is not None]
    if len(chosen) > 1:
        names = " and ".join(f"--{n.replace('_', '-')}" for n in chosen)
        raise ConnectionOptionsError(f"{names} are different ways to log in: choose one")
    if (args.username is None) != (args.password_file is None):
        raise ConnectionOptionsError("--username and --password-file go together")
    if args.tls and args.certs is not None:
        raise ConnectionOptionsError("--certs already means TLS (with a certificate per device); drop --tls")
    credentials = None
    if args.broker_secret_file is not None:
        credentials = broker_credentials(_read(args.broker_secret_file, "broker secret file").strip())
    elif args.username is not None:
        # only the line end goes: spaces may belong to the password
        password = _read(args.password_file, "password file").decode().rstrip("\r\n")
        credentials = fleet_credentials(args.username, password)
    tls: TlsContexts | None = None
    if args.certs is not None:
        tls = DeviceCertificates(args.certs, args.ca_file)
    elif args.tls:
        tls = ServerTls(args.ca_file)
    elif args.ca_file is not None:
        raise ConnectionOptionsError("--ca-file is the broker's CA for --tls or --certs; add one of them")
    return ConnectionOptions(
        host=args.broker[0],
        port=args.broker[1],
        credentials=credentials,
        tls=tls,
        websocket_host=args.websocket_host,
        topic=device_topic(args.topic, args.basic_ingest),
        sign=not args.no_sign,
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConnectionOptionsError(f"cannot read the {what} {path}: {exc.strerror}") from None
