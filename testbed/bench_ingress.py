"""Ingress comparison: the highest offered rate each local ingress mode carries with zero loss."""

from __future__ import annotations

from typing import Any

from testbed.loadrun import run_step
from testbed.stack import Stack

RATES = (250, 500, 1000, 1500, 2000, 3000)
P99_BOUND_MS = 2000.0


def run(
    stack: Stack, modes: tuple[str, ...] = ("direct", "sqs"), duration_s: float = 20.0, devices: int = 100
) -> list[dict[str, Any]]:
    """Step the rate up per mode until a step loses messages or its p99 exceeds the bound."""
    rows = []
    outputs_file = stack.backend.state_dir / "outputs.json"
    outputs_file.write_text(stack.terraform.outputs_json())
    for mode in modes:
        stack.backend.start_ingress(outputs_file, mode)
        for rate in RATES:
            step = run_step(stack, devices, rate, duration_s)
            rows.append({"mode": mode, **step.as_dict()})
            if step.lost or step.p99_ms > P99_BOUND_MS:
                break
    return rows
