"""What a run is asked to do: the fleet, its seed and length, the broker it targets and how."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.connection import DEFAULT_TOPIC, TlsContexts
from simulator.devices import Emitted, device_ids
from simulator.fleet import Fleet
from simulator.limits import IOT_CORE_ACCOUNT_PUBLISHES_S, is_aws_iot
from simulator.schedule import Constant, RateProfile
from simulator.shard import Shard
from telemetry.topics import DeviceTopic

DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class MqttTarget:
    """Where and how devices connect: a broker, with per-device credentials or certificates."""

    host: str
    port: int
    credentials: Callable[[str], tuple[str, str]] | None = None
    tls: TlsContexts | None = None


@dataclass
class RunConfig:
    """One run of a fleet: dry or live, whole or one shard, on one broker."""

    fleet: Fleet
    seed: int
    key: bytes
    duration_s: float
    profile: RateProfile = field(default_factory=Constant)
    qos: int = 1
    host: str = "127.0.0.1"
    port: int = 1883
    window: int = 100
    # QoS 1: send a publish again when no PUBACK came within this many seconds (None: only after a reconnect)
    ack_timeout_s: float | None = None
    clean_session: bool = True
    workers: int = 1
    credentials: Callable[[str], tuple[str, str]] | None = None
    drain_timeout_s: float = DRAIN_TIMEOUT_S
    run_tag: str = ""
    websocket_host: str | None = None
    tls: TlsContexts | None = None
    # each device's topic ({device_id} replaced), and whether messages carry the HMAC signature
    topic: DeviceTopic = DEFAULT_TOPIC
    sign: bool = True
    # `module:function` making each payload in another wire format (imported in every worker process)
    payload_hook: str | None = None
    # AWS IoT Core's quotas: checked before the run, and each connection paced to its publish limit
    iot_core_limits: bool = False
    account_publish_limit: float = IOT_CORE_ACCOUNT_PUBLISHES_S
    # Generate the whole run before the clock starts, so sending is all the hot loop does (see module)
    pregenerate: bool = False
    # one slice of the fleet (simulator/shard.py); its summary keeps the samples a merge needs
    shard: Shard | None = None
    # told of every acknowledgement (seconds after the message was due) and failure (its cause):
    # Locust's request events (simulator/locustfile.py)
    on_ack: Callable[[Emitted, float], None] | None = None
    on_fail: Callable[[Emitted, str], None] | None = None
    # set (an Event, shared with the worker processes): stop publishing now, drain, and end (Ctrl-C)
    stop: Any = None

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def device_ids(self) -> list[str]:
        """The devices this run publishes for: the fleet's, or its shard's."""
        ids = device_ids(self.fleet, self.run_tag)
        return self.shard.select(ids) if self.shard is not None else ids

    @classmethod
    def for_target(cls, target: MqttTarget, **settings: Any) -> RunConfig:
        """A run against `target`, IoT Core's quotas applied when it is AWS IoT Core."""
        return cls(
            host=target.host,
            port=target.port,
            credentials=target.credentials,
            tls=target.tls,
            iot_core_limits=is_aws_iot(target.host),
            **settings,
        )
