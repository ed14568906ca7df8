"""Simulator benchmark against a private Mosquitto: connections, QoS 0 and QoS 1 throughput.

Each phase is open-loop: the fleet offers a fixed rate, and the figures say what was delivered
and how late the sends were (a generator that cannot keep up shows it as lateness). Each rate
phase is followed, on the same broker, by the raw paho client driven by hand (raw_paho.py) on as
many connections at the same rate: the fleet's CPU per message next to the raw client's, as a
ratio (the goal: within 2x), so what the simulator adds shows whatever the machine's speed.
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any

from simulator.fleet import parse_fleet
from simulator.run import live_run
from simulator.run_config import RunConfig
from simulator.summary import RunSummary, typical_size
from testbed.bench.raw_paho import private_broker, raw_paho

KEY = b"bench-signing-key"
# (phase, devices, interval_s, qos, window, pregenerate): offered rate = devices / interval_s
PHASES = (
    ("connections", 10_000, 1.0, 0, 100, False),
    ("qos0", 200, 0.004, 0, 200, False),
    ("qos0-pregenerated", 240, 0.004, 0, 200, True),
    ("qos1", 200, 0.01, 1, 200, False),
    ("qos1-pregenerated", 200, 0.01, 1, 200, True),
)
# the fleet's CPU per message over the raw client's, which the simulator should stay within
RAW_RATIO_GOAL = 2.0


def workers_cpu_s() -> float:
    """CPU seconds of this process and of the workers that have ended (the broker, still running, is not)."""
    usages = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    return sum(u.ru_utime + u.ru_stime for u in usages)


def steady_rate(summary: RunSummary) -> int:
    """Median sends per second, leaving out the ramp-up and drain seconds at either end.

    Workers start when their own connections are up, so the whole run's span would count their
    start-up skew as missing throughput.
    """
    counts = [count for _, count in sorted(summary["sent_per_s"].items())][2:-2]
    return int(statistics.median(counts)) if counts else 0


def run(
    duration_s: float = 20.0, workers: int = 2, phases: tuple[tuple[Any, ...], ...] = PHASES
) -> list[dict[str, Any]]:
    rows = []
    with private_broker() as port:
        for phase, devices, interval, qos, window, pregenerate in phases:
            fleet = parse_fleet(
                {
                    "name": phase,
                    "devices": [
                        {
                            "type": "environmental",
                            "count": devices,
                            "interval_s": interval,
                            "jitter": 0.0 if qos or devices < 1000 else 0.1,
                        }
                    ],
                }
            )
            started, cpu_before = time.monotonic(), workers_cpu_s()
            summary = live_run(
                RunConfig(
                    fleet=fleet,
                    seed=1,
                    key=KEY,
                    duration_s=duration_s,
                    qos=qos,
                    port=port,
                    window=window,
                    workers=workers,
                    pregenerate=pregenerate,
                )
            )
            # CPU of the worker processes (connection set-up included) per message sent
            fleet_us = round((workers_cpu_s() - cpu_before) / max(summary["acknowledged"], 1) * 1e6, 1)
            row = {
                "phase": phase,
                "devices": devices,
                "qos": qos,
                "workers": workers,
                "offered_msg_s": round(devices / interval),
                "delivered_msg_s": steady_rate(summary),
                "failed": summary["failed"],
                "send_lateness_p99_ms": summary["send_lateness_ms"]["p99"],
                "cpu_us_per_msg": fleet_us,
                "wall_s": round(time.monotonic() - started, 1),
            }
            if phase != "connections":
                raw = raw_paho(port, devices, devices / interval, qos, duration_s, typical_size(summary))
                row["raw_paho_cpu_us_per_msg"] = raw["cpu_us_per_msg"]
                row["fleet_over_raw"] = round(fleet_us / raw["cpu_us_per_msg"], 2) if raw["cpu_us_per_msg"] else None
            rows.append(row)
    return rows
