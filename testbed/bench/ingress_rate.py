"""End-to-end benchmarks: the highest offered rate an ingress mode carries with zero loss.

`make bench-ingress` compares the local ingress modes; `make bench` measures, in one run, the
emulator's own ceiling, the pipeline's (batched direct invocation) highest good rate as a ratio of
it with the CPU each process spends per message, one raw paho subscriber's CPU per message at that
rate (the yardstick of the rule bridge's), and the naive design's (one Lambda invocation and one
write per message) rate.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

from testbed.bench.ceiling import CpuMeter, grown_emulator, measure, stack_pids
from testbed.bench.loadrun import run_step
from testbed.bench.raw_paho import private_broker, raw_receive
from testbed.lifecycle.stack import Stack

logger = logging.getLogger(__name__)

RATES = (250, 500, 1000, 1500, 2000, 3000)
NAIVE_START = 25
# The search starts where any machine keeps up and doubles from there: a fixed first step of 1,000
# msg/s already fell behind on a slow machine, which then reported no rate at all.
START_RATE = 100
MAX_STEPS = 9
# Stop refining once the bracket around the ceiling is this narrow (relative to the good rate).
PRECISION = 0.15
P99_BOUND_MS = 2000.0
# A step keeps up when it stores at least this share of the offered rate.
KEEPS_UP = 0.9
# The naive design: every message is its own Lambda invocation and its own DynamoDB write.
NAIVE = "naive"
# raw publishers feeding the raw receiver (their number does not change what one receive costs)
RAW_PUBLISHERS = 20


def step_up(stack: Stack, mode: str, rates: tuple[int, ...], duration_s: float, devices: int) -> list[dict[str, Any]]:
    """Run each rate in turn until one loses messages or its p99 exceeds the bound."""
    stack.use_ingress(mode)
    rows = []
    for rate in rates:
        step = run_step(stack, devices, rate, duration_s)
        rows.append({"mode": mode, **step.as_dict()})
        if step.lost or step.late or step.unsettled or step.p99_ms > P99_BOUND_MS:
            break
    return rows


def good(row: dict[str, Any]) -> bool:
    """Zero loss, nothing late, p99 within the bound, and the stored rate keeping up with the offered one."""
    settled_in_time = not (row["lost"] or row.get("late") or row.get("unsettled"))
    return settled_in_time and row["p99_ms"] <= P99_BOUND_MS and row["stored_msg_s"] >= KEEPS_UP * row["offered_msg_s"]


def next_rate(tried: list[tuple[float, bool]], start: float) -> float | None:
    """Double from `start` while steps are good; after the first bad one, halve the bracket between
    the best good rate and the lowest bad one until it is narrow. None: done."""
    if len(tried) >= MAX_STEPS:
        return None
    if not tried:
        return start
    goods = [rate for rate, ok in tried if ok]
    bads = [rate for rate, ok in tried if not ok]
    if not bads:
        return tried[-1][0] * 2
    low_bad = min(bads)
    high_good = max((rate for rate in goods if rate < low_bad), default=None)
    if high_good is None:
        lowest = low_bad / 2
        return lowest if lowest >= start / 8 else None
    if (low_bad - high_good) / high_good <= PRECISION:
        return None
    return round((high_good + low_bad) / 2)


def search_rates(measure_step: Callable[[float], dict[str, Any]], start: float) -> list[dict[str, Any]]:
    """Every step of the search for the highest good rate: doubling from `start`, then bisecting. A
    step that fails is measured once more before it counts (one slow step, a cold start or another
    process's burst, is not the pipeline's rate), so the search goes up again after a pass."""
    rows: list[dict[str, Any]] = []
    tried: list[tuple[float, bool]] = []
    repeated: set[float] = set()
    while (rate := next_rate(tried, start)) is not None:
        row = measure_step(rate)
        rows.append(row)
        if not good(row) and rate not in repeated:
            repeated.add(rate)
            row = {**measure_step(rate), "repeat": True}
            rows.append(row)
        tried.append((rate, good(row)))
    return rows


def search(
    stack: Stack, mode: str, duration_s: float, devices: int, start: float, meter: CpuMeter | None = None
) -> list[dict[str, Any]]:
    """The highest good rate of `mode`, on a warm pipeline (the warm-up is in no step's figures)."""
    stack.use_ingress(mode)
    stack.warm_processor()

    def measure_step(rate: float) -> dict[str, Any]:
        step = run_step(stack, min(devices, max(int(rate), 1)), rate, duration_s, meter=meter)
        row = {"mode": mode, **step.as_dict()}
        logger.info(
            "%s at %g msg/s: stored %g msg/s, p99 %g ms%s, %d lost, %d stored late, %d unsettled: %s",
            mode,
            rate,
            row["stored_msg_s"],
            row["p99_ms"],
            f" ({row['cold_starts']} Lambda cold start(s) in the step)" if row["cold_starts"] else "",
            row["lost"],
            row["late"],
            row["unsettled"],
            "good" if good(row) else "not good",
        )
        return row

    return search_rates(measure_step, start)


def best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The highest good step."""
    kept = [r for r in rows if good(r)]
    return max(kept, key=lambda r: r["stored_msg_s"]) if kept else None


def run(
    stack: Stack, modes: tuple[str, ...] = ("direct", "sqs", "iot"), duration_s: float = 20.0, devices: int = 100
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        for mode in modes:
            rows += step_up(stack, mode, RATES, duration_s, devices)
    finally:
        stack.use_ingress(stack.ingress)
    return rows


def bench(stack: Stack, duration_s: float = 15.0, devices: int = 200, start: float = START_RATE) -> dict[str, Any]:
    """In one run: the emulator's ceiling, the design's highest good rate as a ratio of it with the
    CPU per message of each process, and the naive design's rate."""
    rss_at_start = stack.backend.emulator_rss_mb()
    grown = grown_emulator(rss_at_start)
    if grown:
        logger.warning(grown)
    ceiling = measure(stack)
    logger.info("emulator ceiling: %.0f msg/s (%.1f us of emulator per message)", ceiling.msg_s, ceiling.per_message_us)
    try:
        stack.use_ingress("direct")  # first, so that the meter counts the bridge that carries the steps
        meter = CpuMeter(stack_pids(stack))
        design = search(stack, "direct", duration_s, devices, start, meter)
        naive = search(stack, NAIVE, duration_s, min(devices, 50), NAIVE_START)
    finally:
        stack.use_ingress(stack.ingress)
    top, naive_top = best(design), best(naive)
    ratio = round(top["stored_msg_s"] / naive_top["stored_msg_s"], 1) if top and naive_top else None
    raw = None
    if top:
        try:
            with private_broker() as port:
                raw = raw_receive(port, RAW_PUBLISHERS, top["stored_msg_s"], duration_s, top["payload_bytes"])
        except (OSError, RuntimeError, queue.Empty) as exc:  # the yardstick failed: the run's figures stand
            logger.warning("the raw paho receiver was not measured: %s", exc)
    return {
        "ceiling": ceiling.as_dict(),
        "design_steps": design,
        "naive_steps": naive,
        "best": top,
        "of_ceiling": round(top["stored_msg_s"] / ceiling.msg_s, 2) if top else None,
        "cpu_us_per_msg": top["cpu_us_per_msg"] if top else {},
        "naive_best": naive_top,
        "ratio": ratio,
        "emulator_rss_mb_at_start": rss_at_start,
        "raw_receive": raw,
        "bridge_over_raw_receive": bridge_over_raw(top, raw),
    }


def bridge_over_raw(top: dict[str, Any] | None, raw: dict[str, Any] | None) -> float | None:
    """The rule bridge's CPU per message over one raw paho subscriber's at the same rate."""
    bridge = (top or {}).get("cpu_us_per_msg", {}).get("rule bridge")
    if not bridge or not raw or not raw.get("cpu_us_per_msg"):
        return None
    return round(float(bridge) / float(raw["cpu_us_per_msg"]), 2)
