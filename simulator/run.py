"""Run a fleet: dry-run to a file on a virtual clock, or live against a broker in real time."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingress.broker import device_password
from simulator.devices import Device, Emitted, build_devices, describe
from simulator.fleet import Fleet
from simulator.limits import (
    IOT_CORE_ACCOUNT_PUBLISHES_S,
    IOT_CORE_PUBLISHES_PER_CONNECTION_S,
    check_iot_core_limits,
)
from simulator.schedule import Constant, RateProfile, Schedule
from simulator.summary import Recorder
from simulator.tls import DeviceCertificates
from simulator.transport import MqttFleet

logger = logging.getLogger(__name__)

TICK_S = 0.01  # the scheduler wakes every 10 ms: coarse enough to batch, fine enough for lateness
DRAIN_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 60.0
# TLS handshakes to a remote endpoint wait on round trips, so they run this many at a time.
TLS_CONNECT_THREADS = 16
# Virtual start of dry runs, so the same seed gives the same bytes on every machine and day.
DRY_RUN_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass
class RunConfig:
    fleet: Fleet
    seed: int
    key: bytes
    duration_s: float
    profile: RateProfile = field(default_factory=Constant)
    qos: int = 1
    host: str = "127.0.0.1"
    port: int = 1883
    window: int = 100
    clean_session: bool = True
    workers: int = 1
    credentials: Callable[[str], tuple[str, str]] | None = None
    drain_timeout_s: float = DRAIN_TIMEOUT_S
    run_tag: str = ""
    websocket_host: str | None = None
    tls: DeviceCertificates | None = None
    # AWS IoT Core's quotas: checked before the run, and each connection paced to its publish limit
    iot_core_limits: bool = False
    account_publish_limit: float = IOT_CORE_ACCOUNT_PUBLISHES_S


def broker_credentials(secret: bytes) -> Callable[[str], tuple[str, str]]:
    """Username and password of each device on the local broker (see ingress/broker.py)."""
    return lambda device_id: (device_id, device_password(secret, device_id))


def _emit_all(
    devices: list[Device],
    schedule: Schedule,
    now: float,
    on_emit: Callable[[Emitted], None],
    on_offline: Callable[[Device], None] | None = None,
) -> None:
    for due, device in schedule.pop_due(now):
        for emitted in device.tick(due):
            on_emit(emitted)
        if on_offline is not None and device.offline(now):
            on_offline(device)


def dry_run(config: RunConfig, out: Path, start: float = DRY_RUN_EPOCH) -> dict[str, Any]:
    """Write every publish of the run to a JSONL file, on a virtual clock; no broker."""
    devices = build_devices(config.fleet, config.seed, config.key, config.run_tag)
    schedule = Schedule(devices, start, config.profile)
    recorder = Recorder()
    with out.open("w") as sink:

        def write(emitted: Emitted) -> None:
            sink.write(json.dumps(describe(emitted), separators=(",", ":")) + "\n")
            recorder.generated(emitted)
            recorder.sent(emitted, emitted.due)
            recorder.acked(emitted, emitted.due)

        end = start + config.duration_s
        while schedule.next_due() < end:
            _emit_all(devices, schedule, schedule.next_due(), write)
    return recorder.to_dict()


def _live_worker(
    config: RunConfig, device_ids: set[str] | None, progress: Any, start: float, worker: int = 0
) -> dict[str, Any]:
    devices = [
        d
        for d in build_devices(config.fleet, config.seed, config.key, config.run_tag)
        if device_ids is None or d.device_id in device_ids
    ]
    by_id = {d.device_id: d for d in devices}
    recorder = Recorder()
    fleet = MqttFleet(
        config.host,
        config.port,
        config.qos,
        config.window,
        config.clean_session,
        config.credentials,
        on_send=recorder.sent,
        on_ack=recorder.acked,
        on_fail=recorder.failed,
        websocket_host=config.websocket_host,
        tls=config.tls,
        max_rate_per_connection=IOT_CORE_PUBLISHES_PER_CONNECTION_S if config.iot_core_limits else None,
    )
    fleet.connect_many([d.device_id for d in devices], parallel=TLS_CONNECT_THREADS if config.tls else 1)
    # Time starts once the fleet is connected, so connection set-up is not counted as lateness.
    connect_deadline = time.time() + CONNECT_TIMEOUT_S
    while fleet.connecting() and time.time() < connect_deadline:
        fleet.poll(TICK_S)
    start = max(start, time.time())
    schedule = Schedule(devices, start, config.profile)
    offline: set[str] = set()

    def emit(emitted: Emitted) -> None:
        recorder.generated(emitted)
        fleet.send(emitted)

    def went_offline(device: Device) -> None:
        if device.device_id not in offline:
            offline.add(device.device_id)
            fleet.disconnect(device.device_id)

    end = start + config.duration_s
    next_report = 0.0
    while (now := time.time()) < end:
        for device_id in [d for d in offline if not by_id[d].offline(now)]:
            offline.discard(device_id)
            fleet.connect(device_id)
        _emit_all(devices, schedule, now, emit, went_offline)
        fleet.poll(min(TICK_S, max(0.0, schedule.next_due() - time.time())))
        if progress is not None and now >= next_report:
            next_report = now + 0.25
            progress.put(
                (
                    worker,
                    fleet.counters.connected,
                    fleet.counters.published,
                    fleet.counters.acked,
                    fleet.counters.failed + fleet.counters.connect_errors,
                )
            )
    for device_id in offline:
        fleet.connect(device_id)
    drain_until = time.time() + config.drain_timeout_s
    while fleet.in_flight() and time.time() < drain_until:
        fleet.poll(TICK_S)
    fleet.close()
    if progress is not None:
        progress.put((worker, 0, fleet.counters.published, fleet.counters.acked, fleet.counters.failed))
    return recorder.to_dict(raw=True)


def _worker_entry(
    config: RunConfig, device_ids: set[str], progress: Any, start: float, results: Any, worker: int
) -> None:
    results.put(_live_worker(config, device_ids, progress, start, worker))


def live_run(config: RunConfig, progress: Any = None) -> dict[str, Any]:
    """Publish the fleet to the broker in real time; split over worker processes if asked."""
    if config.iot_core_limits:
        check_iot_core_limits(config.fleet, config.profile, config.account_publish_limit)
    if config.tls is not None:
        config.tls.check([d.device_id for d in build_devices(config.fleet, config.seed, config.key, config.run_tag)])
    start = time.time() + 1.0
    if config.workers <= 1:
        result = _live_worker(config, None, progress, start)
        recorder = Recorder()
        recorder.merge(result)
        return recorder.to_dict()
    ids = [d.device_id for d in build_devices(config.fleet, config.seed, config.key, config.run_tag)]
    ctx = mp.get_context("fork")
    results: Any = ctx.Queue()
    workers = [
        ctx.Process(target=_worker_entry, args=(config, set(ids[i :: config.workers]), progress, start, results, i))
        for i in range(config.workers)
    ]
    for worker in workers:
        worker.start()
    recorder = Recorder()
    for _ in workers:
        recorder.merge(results.get())
    for worker in workers:
        worker.join()
    return recorder.to_dict()
