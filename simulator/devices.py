"""A simulated device: its model, its clock, its faults, and the messages it emits when due.

Faults are drawn from a random stream separate from the sensor model's, so turning a fault on
does not change the underlying trace. Every emitted message carries the faults it was given.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from simulator.fleet import DeviceGroup, Faults, Fleet
from simulator.models import MODELS, Context, quantise, reading_pairs
from simulator.payload import PayloadHook, hooked_payload, load_payload_hook, signed_message
from telemetry.reasons import RejectReason
from telemetry.schema import DEVICE_TYPES, MAX_MESSAGE_BYTES, SCHEMA_VERSION, SENSORS, canonical_bytes, signed_payload
from telemetry.topics import telemetry_topic

BAD_KEY = b"not-the-fleet-key"


class Fault(StrEnum):
    """Tags recorded with each message, so a load run can check the pipeline caught them."""

    SPIKE = "spike"
    STUCK = "stuck"
    BACKLOG = "backlog"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    CLOCK_SKEW = "clock_skew"
    BAD_SIGNATURE = "bad_signature"
    INVALID_JSON = "malformed:invalid_json"
    WRONG_TYPE = "malformed:wrong_type"
    MISSING_FIELD = "malformed:missing_field"
    OVERSIZED = "malformed:oversized"


# What the processor must answer for each fault that makes a message unacceptable.
EXPECTED_REJECTION = {
    Fault.BAD_SIGNATURE: RejectReason.BAD_SIGNATURE,
    Fault.INVALID_JSON: RejectReason.INVALID_JSON,
    Fault.WRONG_TYPE: RejectReason.SCHEMA_VIOLATION,
    Fault.MISSING_FIELD: RejectReason.SCHEMA_VIOLATION,
    Fault.OVERSIZED: RejectReason.TOO_LARGE,
}


@dataclass(frozen=True)
class Emitted:
    """One publish: the device, its message id, the exact bytes, when it was due, its faults."""

    device_id: str
    msg_id: int
    payload: bytes
    due: float
    faults: tuple[str, ...] = ()

    @property
    def topic(self) -> str:
        return telemetry_topic(self.device_id)


@dataclass
class Device:
    device_id: str
    device_type: str
    group: DeviceGroup
    faults: Faults
    key: bytes | None  # None: messages go unsigned
    site: str
    firmware: str
    model_rng: random.Random
    fault_rng: random.Random
    clock_offset_ms: float = 0.0
    clock_drift_ppm: float = 0.0
    site_index: int = 0
    payload_hook: PayloadHook | None = None  # another wire format: the hook makes the payload
    seq: int = 0
    clock_start: float | None = None
    last_t: float | None = None
    offline_until: float = -math.inf
    stuck_until: float = -math.inf
    stuck_values: dict[str, tuple[float | bool, str]] | None = None
    backlog: list[Emitted] = field(default_factory=list)
    held: deque[tuple[int, Emitted]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        ctx = Context(self.model_rng, self.group.interval_s, self.site_index)
        self.model = MODELS[self.device_type](ctx)
        self.sensors = tuple(self.group.sensors or DEVICE_TYPES[self.device_type].sensors)

    def next_interval(self, multiplier: float = 1.0) -> float:
        jitter = self.group.jitter
        return self.group.interval_s * (1 + self.fault_rng.uniform(-jitter, jitter)) / max(multiplier, 1e-6)

    def offline(self, t: float) -> bool:
        return t < self.offline_until

    def tick(self, t: float) -> list[Emitted]:
        """The device's report due at simulated time `t` (epoch s): zero, one or several publishes."""
        dt = self.group.interval_s if self.last_t is None else max(t - self.last_t, 1e-3)
        self.last_t = t
        pairs = reading_pairs(self.model.step(t, dt), self.sensors)
        tags: list[str] = []
        f, r = self.faults, self.fault_rng

        if f.dropout.probability and t >= self.offline_until and r.random() < f.dropout.probability:
            self.offline_until = t + f.dropout.duration_s
        if t < self.stuck_until and self.stuck_values is not None:
            pairs, tags = dict(self.stuck_values), [Fault.STUCK.value]
        elif f.stuck.probability and r.random() < f.stuck.probability:
            self.stuck_until, self.stuck_values = t + f.stuck.duration_s, dict(pairs)
        if f.spike.probability and r.random() < f.spike.probability:
            numeric = [
                n
                for n, (v, _) in pairs.items()
                if not isinstance(v, bool) and n not in ("energy", "latitude", "longitude")
            ]
            if numeric:
                name = r.choice(numeric)
                value, unit = pairs[name]
                # A spike stays within what the sensor can report: it should alert, not be rejected.
                sensor = SENSORS[name]
                spiked = float(value) + f.spike.magnitude * SPIKE_SCALE.get(name, 1.0) * r.choice((-1, 1))
                pairs[name] = (quantise(name, min(sensor.maximum, max(sensor.minimum, spiked))), unit)
                tags.append(f"{Fault.SPIKE.value}:{name}")
        if self.clock_offset_ms or self.clock_drift_ppm:
            tags.append(Fault.CLOCK_SKEW.value)

        self.seq += 1
        message = self._emit(t, pairs, tags)
        if self.offline(t):
            if f.dropout.flush_backlog:
                self.backlog.append(
                    Emitted(
                        message.device_id,
                        message.msg_id,
                        message.payload,
                        message.due,
                        (*message.faults, Fault.BACKLOG.value),
                    )
                )
            return []
        out = [*self.backlog, message]
        self.backlog = []
        if f.duplicate.probability and r.random() < f.duplicate.probability:
            out.append(
                Emitted(message.device_id, message.msg_id, message.payload, t, (*message.faults, Fault.DUPLICATE.value))
            )
        if f.out_of_order.probability and r.random() < f.out_of_order.probability:
            held = out.pop()
            self.held.append(
                (
                    self.seq + f.out_of_order.delay_messages,
                    Emitted(
                        held.device_id, held.msg_id, held.payload, held.due, (*held.faults, Fault.OUT_OF_ORDER.value)
                    ),
                )
            )
        while self.held and self.held[0][0] <= self.seq:
            out.append(self.held.popleft()[1])
        return out

    def _device_ts(self, t: float) -> int:
        """The device's own clock: true time plus its offset and its drift since it started."""
        if self.clock_start is None:
            self.clock_start = t
        elapsed_ms = (t - self.clock_start) * 1000
        return int(t * 1000 + self.clock_offset_ms + self.clock_drift_ppm * 1e-6 * elapsed_ms)

    def _emit(self, t: float, pairs: dict[str, tuple[float | bool, str]], tags: list[str]) -> Emitted:
        message: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "device_id": self.device_id,
            "msg_id": self.seq,
            "ts": self._device_ts(t),
            "device_type": self.device_type,
            "firmware": self.firmware,
            "site": self.site,
            "readings": {name: {"value": value, "unit": unit} for name, (value, unit) in pairs.items()},
        }
        f, r = self.faults, self.fault_rng
        key = self.key
        if key is not None and f.bad_signature.probability and r.random() < f.bad_signature.probability:
            key = BAD_KEY
            tags.append(Fault.BAD_SIGNATURE.value)
        if f.malformed.probability and r.random() < f.malformed.probability:
            kind = r.choice(f.malformed.kinds)
            tags.append(f"malformed:{kind}")
            return Emitted(self.device_id, self.seq, malformed(message, kind, key), t, tuple(tags))
        # quantise() already gives integral values as ints, the canonical form of a number
        if self.payload_hook is not None:
            return Emitted(self.device_id, self.seq, hooked_payload(self.payload_hook, message), t, tuple(tags))
        payload = signed_message(message, key)
        return Emitted(self.device_id, self.seq, payload, t, tuple(tags))


# How far a spike of magnitude 1 moves each channel (about one noise standard deviation).
SPIKE_SCALE = {
    "temperature": 3.0,
    "humidity": 4.0,
    "pressure": 5.0,
    "co2": 150.0,
    "vibration_rms": 1.5,
    "vibration_peak": 5.0,
    "bearing_temperature": 5.0,
    "voltage": 3.0,
    "current": 3.0,
    "power_factor": 0.03,
    "battery": 5.0,
    "rssi": 5.0,
}


def malformed(message: dict[str, Any], kind: str, key: bytes | None) -> bytes:
    """A broken payload of the given kind; still identifiable (device id and msg id in clear)."""
    encode = (lambda m: signed_payload(m, key)) if key is not None else canonical_bytes
    if kind == "invalid_json":
        return encode(message)[:-9]
    if kind == "wrong_type":
        return encode({**message, "msg_id": str(message["msg_id"])})
    if kind == "missing_field":
        return encode({k: v for k, v in message.items() if k != "firmware"})
    if kind == "oversized":
        return encode({**message, "padding": "x" * (MAX_MESSAGE_BYTES + 1024)})
    raise ValueError(f"unknown malformed kind {kind!r}")


def _id_parts(fleet: Fleet, run_tag: str) -> list[tuple[DeviceGroup, str, str]]:
    """(group, n, base id, device id) for every device; the run tag goes into the id only."""
    parts = []
    for group in fleet.devices:
        prefix = group.id_prefix or group.type.replace("_", "")[:5]
        for n in range(group.count):
            base_id = f"{prefix}-{n:05d}"
            parts.append((group, base_id, f"{prefix}-{run_tag}-{n:05d}" if run_tag else base_id))
    return parts


def device_ids(fleet: Fleet, run_tag: str = "") -> list[str]:
    """The ids `build_devices` gives, without building the devices' models (provisioning, checks)."""
    return [device_id for _, _, device_id in _id_parts(fleet, run_tag)]


def build_devices(
    fleet: Fleet, seed: int, key: bytes | None, run_tag: str = "", payload_hook: str | None = None
) -> list[Device]:
    """Every device of the fleet, deterministically from the seed.

    A run tag goes into the device ids (so runs of one fleet do not share devices, cooldowns or
    items) but not into the random streams: the traces stay the same.
    """
    devices: list[Device] = []
    hook = load_payload_hook(payload_hook) if payload_hook else None  # by name: worker processes import it too
    for index, (group, base_id, device_id) in enumerate(_id_parts(fleet, run_tag)):
        setup = random.Random(f"{seed}:{base_id}:setup")
        skewed = setup.random() < fleet.faults.clock.device_fraction
        devices.append(
            Device(
                device_id=device_id,
                device_type=group.type,
                group=group,
                faults=fleet.faults,
                key=key,
                site=fleet.sites[index % len(fleet.sites)],
                site_index=index % len(fleet.sites),
                firmware=setup.choice(group.firmware),
                model_rng=random.Random(f"{seed}:{base_id}:model"),
                fault_rng=random.Random(f"{seed}:{base_id}:faults"),
                clock_offset_ms=setup.uniform(-1, 1) * fleet.faults.clock.offset_s * 1000 if skewed else 0.0,
                clock_drift_ppm=setup.uniform(-1, 1) * fleet.faults.clock.drift_ppm if skewed else 0.0,
                payload_hook=hook,
            )
        )
    return devices


def describe(emitted: Emitted) -> dict[str, Any]:
    """A JSON-able record of one publish (dry-run files, traces)."""
    return {
        "due": round(emitted.due, 6),
        "topic": emitted.topic,
        "device_id": emitted.device_id,
        "msg_id": emitted.msg_id,
        "faults": list(emitted.faults),
        "payload": emitted.payload.decode(),
    }
