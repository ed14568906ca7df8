"""Run a fleet: dry-run to a file on a virtual clock, or live against a broker in real time.

Live runs generate each message when it is due, or, with `pregenerate`, generate the whole run
(the same messages, for the same start) before the clock starts and then only send: generating
and signing is about half of what a publish costs, so this is how one machine offers the most.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing as mp
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulator.devices import Device, Emitted, build_devices, describe
from simulator.limits import (
    IOT_CORE_PUBLISHES_PER_CONNECTION_S,
    LimitError,
    check_iot_core_limits,
)
from simulator.progress import WorkerProgress
from simulator.run_config import RunConfig
from simulator.schedule import Schedule
from simulator.summary import RawRunSummary, Recorder
from simulator.transport import MqttFleet
from toolkit.histogram import LatencyHistogram

logger = logging.getLogger(__name__)

TICK_S = 0.01  # the scheduler wakes every 10 ms: coarse enough to batch, fine enough for lateness
CONNECT_TIMEOUT_S = 60.0
# TLS handshakes to a remote endpoint wait on round trips, so they run this many at a time.
TLS_CONNECT_THREADS = 16
# What pre-generation may hold in memory (~0.6 KB a message).
PREGENERATE_MAX_MESSAGES = 5_000_000
PREGENERATE_SAMPLE_MESSAGES = 2_000
# A pre-generated message or a device going offline (its id) until a time, at a time.
Event = tuple[float, Emitted | str, float]
# Virtual start of dry runs, so the same seed gives the same bytes on every machine and day.
DRY_RUN_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z


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


def dry_run(config: RunConfig, out: Path | None, start: float = DRY_RUN_EPOCH) -> RawRunSummary:
    """Every publish of the run on a virtual clock, no broker; written to `out` as JSONL if given."""
    mine = set(config.device_ids())
    devices = [
        d
        for d in build_devices(
            config.fleet, config.seed, config.key if config.sign else None, config.run_tag, config.payload_hook
        )
        if d.device_id in mine
    ]
    schedule = Schedule(devices, start, config.profile)
    recorder = Recorder()
    with out.open("w") if out is not None else contextlib.nullcontext() as sink:

        def write(emitted: Emitted) -> None:
            if sink is not None:
                sink.write(json.dumps(describe(emitted), separators=(",", ":")) + "\n")
            recorder.generated(emitted)
            recorder.sent(emitted, emitted.due)
            recorder.acked(emitted, emitted.due)

        end = start + config.duration_s
        while schedule.next_due() < end:
            _emit_all(devices, schedule, schedule.next_due(), write)
    return recorder.to_dict(raw=config.shard is not None)


def planned_messages(config: RunConfig) -> dict[str, list[int]]:
    """The run's plan: each device's message ids, as the dry run derives them from the fleet, seed,
    duration, profile and run tag (what a live run of the same config must publish)."""
    # whether messages are signed changes which random draws a device makes (its bad-signature fault),
    # so the plan signs (or not) as the run does: `sign` is false where a payload hook is given
    plain = dataclasses.replace(config, payload_hook=None)
    return {device_id: record["acked"] for device_id, record in dry_run(plain, None)["per_device"].items()}


def _pregenerate(devices: list[Device], schedule: Schedule, end: float, recorder: Recorder) -> deque[Event]:
    """Every publish and every dropout of the run, in the order the live loop would meet them."""
    events: deque[Event] = deque()
    at = schedule.next_due()

    def on_emit(emitted: Emitted) -> None:
        recorder.noted(emitted)
        events.append((at, emitted, 0.0))

    def on_offline(device: Device) -> None:
        events.append((at, device.device_id, device.offline_until))

    while (at := schedule.next_due()) < end:
        _emit_all(devices, schedule, at, on_emit, on_offline)
    return events


def _generation_lead_s(config: RunConfig) -> float:
    """Seconds a worker needs to pre-generate its share, from a timed sample of the fleet."""
    devices = build_devices(
        config.fleet, config.seed, config.key if config.sign else None, config.run_tag, config.payload_hook
    )
    schedule = Schedule(devices, 0.0, config.profile)
    count, started = 0, time.perf_counter()

    def counted(emitted: Emitted) -> None:
        nonlocal count
        count += 1

    while count < PREGENERATE_SAMPLE_MESSAGES and schedule.next_due() < config.duration_s:
        _emit_all(devices, schedule, schedule.next_due(), counted)
    per_message = (time.perf_counter() - started) / max(count, 1)
    expected = count / max(schedule.next_due(), 1e-3) * config.duration_s
    if expected > PREGENERATE_MAX_MESSAGES:
        raise LimitError(
            f"pre-generating ~{expected:,.0f} messages would exceed {PREGENERATE_MAX_MESSAGES:,} "
            "held in memory; shorten the run or generate live"
        )
    return 1.0 + 1.5 * per_message * expected / max(config.workers, 1)


def _live_worker(
    config: RunConfig, device_ids: set[str] | None, progress: Any, start: float, worker: int = 0, lead_s: float = 0.0
) -> RawRunSummary:
    devices = [
        d
        for d in build_devices(
            config.fleet, config.seed, config.key if config.sign else None, config.run_tag, config.payload_hook
        )
        if device_ids is None or d.device_id in device_ids
    ]
    recorder = Recorder()
    ack_latency = LatencyHistogram()

    def acked(emitted: Emitted, at: float) -> None:
        recorder.acked(emitted, at)
        ack_latency.observe(at - emitted.due)
        if config.on_ack is not None:
            config.on_ack(emitted, at - emitted.due)

    def failed(emitted: Emitted, cause: str) -> None:
        recorder.failed(emitted, cause)
        if config.on_fail is not None:
            config.on_fail(emitted, cause)

    def report(connected: int) -> WorkerProgress:
        counters = fleet.counters
        return WorkerProgress(
            worker,
            connected,
            recorder.publishes,
            recorder.acknowledged,
            recorder.failed_messages,
            counters.connect_errors,
            counters.reconnects,
            ack_latency.copy(),  # the queue pickles it later, on its own thread
            recorder.duplicate_sends,
        )

    fleet = MqttFleet(
        config.host,
        config.port,
        config.qos,
        config.window,
        config.clean_session,
        config.credentials,
        on_send=recorder.sent,
        on_ack=acked,
        on_fail=failed,
        websocket_host=config.websocket_host,
        tls=config.tls,
        max_rate_per_connection=IOT_CORE_PUBLISHES_PER_CONNECTION_S if config.iot_core_limits else None,
        topic=config.topic,
        ack_timeout_s=config.ack_timeout_s,
        on_resend=recorder.resent,
    )
    fleet.connect_many([d.device_id for d in devices], parallel=TLS_CONNECT_THREADS if config.tls else 1)
    # Time starts once the fleet is connected, so connection set-up is not counted as lateness.
    connect_deadline = time.time() + CONNECT_TIMEOUT_S
    while fleet.connecting() and time.time() < connect_deadline:
        fleet.poll(TICK_S)
    start = max(start, time.time() + lead_s)
    schedule = Schedule(devices, start, config.profile)
    end = start + config.duration_s
    events = _pregenerate(devices, schedule, end, recorder) if config.pregenerate else None
    while time.time() < start:  # keep the connections served while waiting for the clock
        fleet.poll(min(TICK_S, max(0.0, start - time.time())))
    offline: dict[str, float] = {}  # device id -> back online at

    def emit(emitted: Emitted) -> None:
        recorder.generated(emitted)
        fleet.send(emitted)

    def go_offline(device_id: str, until: float) -> None:
        if device_id not in offline:
            offline[device_id] = until
            fleet.disconnect(device_id)

    next_report = 0.0
    while (now := time.time()) < end and not config.stopped():
        for device_id in [d for d, until in offline.items() if until <= now]:
            del offline[device_id]
            fleet.connect(device_id)
        if events is None:
            _emit_all(devices, schedule, now, emit, lambda d: go_offline(d.device_id, d.offline_until))
            next_due = schedule.next_due()
        else:
            while events and events[0][0] <= now:
                _, item, until = events.popleft()
                if isinstance(item, Emitted):
                    recorder.published(item)
                    fleet.send(item)
                else:
                    go_offline(item, until)
            next_due = events[0][0] if events else end
        fleet.poll(min(TICK_S, max(0.0, next_due - time.time())))
        if progress is not None and now >= next_report:
            next_report = now + 0.25
            progress.put(report(fleet.counters.connected))
    # what fell due in the last tick before the end is sent too: the run publishes its whole plan
    if not config.stopped():  # stopped early (Ctrl-C), the rest of the plan is not sent
        if events is None:
            while schedule.next_due() < end:
                _emit_all(
                    devices, schedule, schedule.next_due(), emit, lambda d: go_offline(d.device_id, d.offline_until)
                )
        else:
            for _, item, until in events:
                if isinstance(item, Emitted):
                    recorder.published(item)
                    fleet.send(item)
                else:
                    go_offline(item, until)
    for device_id in offline:
        fleet.connect(device_id)
    drain_until = time.time() + config.drain_timeout_s
    while fleet.in_flight() and time.time() < drain_until:
        fleet.poll(TICK_S)
    fleet.close()
    recorder.connections(fleet.counters.reconnects, fleet.counters.connect_errors)
    if progress is not None:
        progress.put(report(0))
    return recorder.to_dict(raw=True)


def _worker_entry(
    config: RunConfig, device_ids: set[str], progress: Any, start: float, results: Any, worker: int, lead_s: float
) -> None:
    if config.stop is not None:
        # Ctrl-C reaches the whole process group: the parent sets config.stop, and each worker drains
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    results.put(_live_worker(config, device_ids, progress, start, worker, lead_s))


def live_run(config: RunConfig, progress: Any = None) -> RawRunSummary:
    """Publish the fleet to the broker in real time; split over worker processes if asked."""
    if config.iot_core_limits:
        check_iot_core_limits(config.fleet, config.profile, config.account_publish_limit)
    ids = config.device_ids()
    if config.tls is not None:
        config.tls.check(ids)
    lead_s = _generation_lead_s(config) if config.pregenerate else 0.0
    start = time.time() + 1.0
    raw = config.shard is not None
    if config.workers <= 1:
        result = _live_worker(config, set(ids) if raw else None, progress, start, lead_s=lead_s)
        recorder = Recorder()
        recorder.merge(result)
        return recorder.to_dict(raw=raw)
    ctx = mp.get_context("fork")
    results: Any = ctx.Queue()
    workers = [
        # daemons: a caller that gives up (a second Ctrl-C) does not wait for them at exit
        ctx.Process(
            target=_worker_entry,
            args=(config, set(ids[i :: config.workers]), progress, start, results, i, lead_s),
            daemon=True,
        )
        for i in range(config.workers)
    ]
    for worker in workers:
        worker.start()
    recorder = Recorder()
    for _ in workers:
        recorder.merge(results.get())
    for worker in workers:
        worker.join()
    return recorder.to_dict(raw=raw)


def live_run_with_progress(config: RunConfig, on_progress: Callable[[WorkerProgress], None]) -> RawRunSummary:
    """`live_run` on a thread of its own, calling `on_progress` with the fleet's totals about four
    times a second until it ends; an error of the run is raised here, in the caller's thread."""
    reports: Any = mp.get_context("fork").Queue()
    results: list[RawRunSummary] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(live_run(config, reports))
        except BaseException as exc:  # re-raised below
            failures.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    latest: dict[int, WorkerProgress] = {}
    while runner.is_alive():
        try:
            with contextlib.suppress(queue.Empty):
                report = reports.get(timeout=0.25)
                latest[report.worker] = report
            on_progress(WorkerProgress.total(latest.values()))
        except KeyboardInterrupt:
            if config.stop is None or config.stopped():  # nothing to stop with, or a second Ctrl-C
                raise
            config.stop.set()  # the run stops publishing, drains what is in flight, and returns
    runner.join()
    if failures:
        raise failures[0]
    return results[0]
