"""End-to-end benchmarks: the highest offered rate an ingress mode carries with zero loss.

`make bench-ingress` compares the local ingress modes; `make bench` pits the pipeline's design
(batched direct invocation) against the naive design (one Lambda invocation and one write per
message) in one run.
"""

from __future__ import annotations

from typing import Any

from testbed.lifecycle.stack import Stack
from testbed.runs.loadrun import run_step

RATES = (250, 500, 1000, 1500, 2000, 3000)
BENCH_RATES = (1000, 1500, 2000, 2500, 3000, 4000, 5000)
NAIVE_RATES = (25, 50, 100, 150, 200, 300)
P99_BOUND_MS = 2000.0
# The naive design: every message is its own Lambda invocation and its own DynamoDB write.
NAIVE = "naive"


def step_up(stack: Stack, mode: str, rates: tuple[int, ...], duration_s: float, devices: int) -> list[dict[str, Any]]:
    """Run each rate in turn until one loses messages or its p99 exceeds the bound."""
    stack.use_ingress(mode)
    rows = []
    for rate in rates:
        step = run_step(stack, devices, rate, duration_s)
        rows.append({"mode": mode, **step.as_dict()})
        if step.lost or step.p99_ms > P99_BOUND_MS:
            break
    return rows


def best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The highest step with zero loss and p99 within the bound."""
    good = [r for r in rows if not r["lost"] and r["p99_ms"] <= P99_BOUND_MS]
    return max(good, key=lambda r: r["stored_msg_s"]) if good else None


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


def bench(stack: Stack, duration_s: float = 20.0, devices: int = 200) -> dict[str, Any]:
    """The design against the naive design, same stack, same run."""
    try:
        design = step_up(stack, "direct", BENCH_RATES, duration_s, devices)
        naive = step_up(stack, NAIVE, NAIVE_RATES, duration_s, min(devices, 50))
    finally:
        stack.use_ingress(stack.ingress)
    top, naive_top = best(design), best(naive)
    ratio = round(top["stored_msg_s"] / naive_top["stored_msg_s"], 1) if top and naive_top else None
    return {"design_steps": design, "naive_steps": naive, "best": top, "naive_best": naive_top, "ratio": ratio}
