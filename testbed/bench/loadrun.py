"""One load step through the whole local pipeline, reconciled by message id.

The simulator publishes a fleet for a while; then the step waits until every acknowledged
message is stored (or a bounded wait ends) and measures loss and end-to-end latency
(device timestamp -> stored_at). A step the pipeline fell behind on is then waited out until its
queues are empty: what it stores meanwhile is late, not lost, and the next step starts on an idle
pipeline, not on this one's backlog.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
from rich.console import Console

from processor.store import StoredReading
from simulator.fleet import parse_fleet
from simulator.run import live_run
from simulator.run_config import RunConfig
from simulator.summary import acked_ids, percentiles, typical_size
from testbed.bench.ceiling import CpuMeter
from testbed.lifecycle.stack import Stack
from testbed.stores import Stores, run_items, stores_idle, wait_for_drain

DRAIN_TIMEOUT_S = 120.0
# after a drain that timed out: how long the backlog may take to clear before the step is left
BACKLOG_TIMEOUT_S = 900.0
# the backlog is over once the queues are empty and every missing message is stored, or once they
# have been empty, with nothing new stored, for longer than the processor's default timeout (30 s):
# an invocation in flight is in no queue, and the bridge writes its counters every few seconds
IDLE_S = 40.0
BACKLOG_POLL_S = 2.0


@dataclass(frozen=True)
class StepResult:
    offered_msg_s: float
    acked: int
    stored: int
    # acknowledged, and not stored once the pipeline was idle again
    lost: int
    duplicates: int
    stored_msg_s: float
    p50_ms: float
    p99_ms: float
    drain_s: float
    # CPU time per stored message of each process, from the send's start to the drain's end
    cpu_us_per_msg: dict[str, float] = field(default_factory=dict)
    # Lambda workers started during the step: a cold start is the likeliest cause of a high p99
    cold_starts: int = 0
    # the size the devices sent most often, for a yardstick to send the same
    payload_bytes: int = 0
    # stored only after the drain's deadline, while the backlog cleared
    late: int = 0
    # neither stored nor given up: the queues still held messages when the backlog wait ended
    unsettled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def wait_out_backlog(
    stack: Stack, stores: Stores, device_ids: list[str], since_ms: int, missing: set[tuple[str, int]]
) -> tuple[list[StoredReading], bool]:
    """The step's readings once the pipeline is idle with `missing` stored, or idle without them
    for IDLE_S; False if neither came within BACKLOG_TIMEOUT_S."""
    deadline, idle_since, count = time.time() + BACKLOG_TIMEOUT_S, None, -1
    while True:
        items = run_items(stores, device_ids, since_ms)
        idle = stores_idle(stack, stores)
        if idle and missing <= {(i.device_id, i.msg_id) for i in items}:
            return items, True
        idle_since = (idle_since or time.time()) if idle and len(items) == count else None
        if idle_since is not None and time.time() - idle_since >= IDLE_S:
            return items, True
        if time.time() >= deadline:
            return items, False
        count = len(items)
        time.sleep(BACKLOG_POLL_S)


def run_step(
    stack: Stack, devices: int, rate_msg_s: float, duration_s: float, seed: int = 1, meter: CpuMeter | None = None
) -> StepResult:
    """Offer `rate_msg_s` from `devices` devices for `duration_s`, then reconcile against DynamoDB;
    with a meter, also the CPU each of the stack's processes (and this one, the simulator) spent."""
    backend = stack.backend
    prefix = f"ld{uuid.uuid4().hex[:6]}"
    ids = [f"{prefix}-{n:05d}" for n in range(devices)]
    backend.provision_devices(ids)
    target = backend.mqtt_target()
    outputs = stack.outputs()
    key = stack.signing_key()
    fleet = parse_fleet(
        {
            "name": "load",
            "devices": [
                {"type": "environmental", "count": devices, "interval_s": devices / rate_msg_s, "id_prefix": prefix}
            ],
        }
    )
    started = time.time()
    before = meter.sample() if meter else {}
    known_workers = meter.workers() if meter else frozenset()
    simulator = psutil.Process()
    simulator_before = sum(simulator.cpu_times()[:2])
    summary = live_run(
        RunConfig.for_target(
            target,
            fleet=fleet,
            seed=seed,
            key=key,
            duration_s=duration_s,
            qos=1,
            workers=1,
            topic=stack.backend.topic,
        )
    )
    simulator_s = sum(simulator.cpu_times()[:2]) - simulator_before
    acked = acked_ids(summary)
    stores = Stores.connect(outputs, stack.client, stack.alert_journal)
    sent_done = time.time()
    since_ms = int(started * 1000) - 1000
    items, drained = wait_for_drain(
        stack, stores, ids, since_ms, len(acked), DRAIN_TIMEOUT_S, Console(quiet=True), poll_s=1.0
    )
    drain_s = time.time() - sent_done
    spent = {name: at - before[name] for name, at in (meter.sample() if meter else {}).items() if name in before}
    if meter:
        spent["simulator"] = simulator_s
    stored = [(i.device_id, i.msg_id) for i in items]
    late, unsettled = 0, 0
    if not drained:
        missing = acked - set(stored)
        later, settled = wait_out_backlog(stack, stores, ids, since_ms, missing)
        late = len(missing & {(i.device_id, i.msg_id) for i in later})
        unsettled = 0 if settled else len(missing) - late
    backend.release_devices(ids)
    latency_ms = percentiles([(i.stored_at_ms - i.ts) / 1000 for i in items])
    stored_at = np.array([i.stored_at_ms for i in items], dtype=float) / 1000
    span = (stored_at.max() - max(started, stored_at.min())) if len(items) > 1 else duration_s
    return StepResult(
        offered_msg_s=rate_msg_s,
        acked=len(acked),
        stored=len(set(stored)),
        lost=len(acked - set(stored)) - late - unsettled,
        duplicates=len(stored) - len(set(stored)),
        stored_msg_s=round(len(items) / max(span, 1e-3), 1),
        p50_ms=latency_ms["p50"],
        p99_ms=latency_ms["p99"],
        drain_s=round(drain_s, 1),
        cpu_us_per_msg={name: round(s * 1e6 / max(len(items), 1), 1) for name, s in spent.items()},
        cold_starts=meter.started_after(known_workers) if meter else 0,
        payload_bytes=typical_size(summary),
        late=late,
        unsettled=unsettled,
    )
