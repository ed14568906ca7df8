"""Simulator benchmark against a private Mosquitto: connections, QoS 0 and QoS 1 throughput.

Each phase is open-loop: the fleet offers a fixed rate, and the figures say what was delivered
and how late the sends were (a generator that cannot keep up shows it as lateness).
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from simulator.fleet import parse_fleet
from simulator.run import live_run
from simulator.run_config import RunConfig
from simulator.summary import RunSummary
from testbed.lifecycle.backends.local_ingress import mosquitto_binary
from testbed.lifecycle.ports import LOOPBACK, free_port, wait_for_port

KEY = b"bench-signing-key"
# (phase, devices, interval_s, qos, window, pregenerate): offered rate = devices / interval_s
PHASES = (
    ("connections", 10_000, 1.0, 0, 100, False),
    ("qos0", 200, 0.004, 0, 200, False),
    ("qos0-pregenerated", 240, 0.004, 0, 200, True),
    ("qos1", 200, 0.01, 1, 200, False),
)


@contextmanager
def private_broker() -> Iterator[int]:
    """A Mosquitto of our own on a free loopback port, stopped by its PID afterwards."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mosquitto.conf"
        config.write_text(
            f"listener {port} {LOOPBACK}\nallow_anonymous true\nmax_connections -1\nmax_queued_messages 100000\n"
        )
        proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            if not wait_for_port(port, 10):
                raise RuntimeError("the benchmark's mosquitto did not start")
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


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


def run(duration_s: float = 20.0, workers: int = 2) -> list[dict[str, Any]]:
    rows = []
    with private_broker() as port:
        for phase, devices, interval, qos, window, pregenerate in PHASES:
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
            rows.append(
                {
                    "phase": phase,
                    "devices": devices,
                    "qos": qos,
                    "workers": workers,
                    "offered_msg_s": round(devices / interval),
                    "delivered_msg_s": steady_rate(summary),
                    "failed": summary["failed"],
                    "send_lateness_p99_ms": summary["send_lateness_ms"]["p99"],
                    # CPU of the worker processes (connection set-up included) per message sent
                    "cpu_us_per_msg": round((workers_cpu_s() - cpu_before) / max(summary["acknowledged"], 1) * 1e6, 1),
                    "wall_s": round(time.monotonic() - started, 1),
                }
            )
    return rows
