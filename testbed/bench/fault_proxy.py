"""What the API fault proxy costs: the latency and CPU it adds to one call, against the same emulator
in the same minute, and the pipeline's stored rate through it (no rules set) against the rate
without it. Single runs vary too much on these machines, so both are measured in interleaved,
repeated rounds (direct and proxied in turn, the order swapped each round) and reported as medians.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import psutil
from botocore.config import Config

from testbed.bench.loadrun import run_step
from testbed.exceptions import TestbedError
from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.stack import Stack

CALLS_PER_ROUND = 300
CALL_ROUNDS = 5
RATE_ROUNDS = 3
RATE_STEP_S = 10.0
RATE_DEVICES = 200
# the pipeline through the proxy must keep this share of its rate without it
RATE_SHARE_GOAL = 0.9
# `make bench` offers this much more than its best good rate, so both sides run at their capacity
ABOVE_BEST = 1.25
START_TIMEOUT_S = 30.0


def _client(url: str, region: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"mode": "standard", "max_attempts": 0}),
    )


class _Proxy:
    """A fault proxy of the bench's own in front of the emulator, on a free port."""

    def __init__(self, upstream: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fault-proxy-bench-"))
        port_file = self.folder / "port"
        cmd = [sys.executable, "-m", "fault_proxy", "--upstream", upstream, "--port-file", str(port_file)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise TestbedError("the fault proxy for the bench did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"
        self.cpu = psutil.Process(self.process.pid)

    def cpu_s(self) -> float:
        times = self.cpu.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def _timed_calls(client: Any, table: str, calls: int) -> list[float]:
    """Each call's wall time (ms): a GetItem of a key that is not there, the smallest real call."""
    taken = []
    for n in range(calls):
        started = time.perf_counter()
        client.get_item(TableName=table, Key={"device_id": {"S": f"bench-{n}"}, "sk": {"S": "none"}})
        taken.append((time.perf_counter() - started) * 1000)
    return taken


def per_call(stack: Stack, rounds: int = CALL_ROUNDS, calls: int = CALLS_PER_ROUND) -> dict[str, Any]:
    """The latency (median and p99, ms) one call gets with and without the proxy, the difference of
    the medians, and the proxy's own CPU per call (us)."""
    backend = stack.backend
    if not isinstance(backend, EmbeddedBackend):
        raise TestbedError("the fault proxy's bench needs an emulator this project runs (embedded, localstack)")
    table = stack.outputs().telemetry_table_name
    if table is None:
        raise TestbedError("the stack has no telemetry table to call")
    proxy = _Proxy(backend.emulator_url())
    try:
        direct, proxied = _client(backend.emulator_url(), backend.region), _client(proxy.url, backend.region)
        _timed_calls(direct, table, 20)
        _timed_calls(proxied, table, 20)
        samples: dict[str, list[float]] = {"direct": [], "proxied": []}
        added: list[float] = []
        cpu_s = 0.0
        for n in range(rounds):
            medians = {}
            for name in ("direct", "proxied") if n % 2 == 0 else ("proxied", "direct"):
                before = proxy.cpu_s()
                taken = _timed_calls(direct if name == "direct" else proxied, table, calls)
                if name == "proxied":
                    cpu_s += proxy.cpu_s() - before
                samples[name] += taken
                medians[name] = statistics.median(taken)
            added.append(medians["proxied"] - medians["direct"])
    finally:
        proxy.stop()

    def p99(values: list[float]) -> float:
        return sorted(values)[int(0.99 * (len(values) - 1))]

    return {
        "calls": rounds * calls,
        "direct_p50_ms": round(statistics.median(samples["direct"]), 3),
        "proxied_p50_ms": round(statistics.median(samples["proxied"]), 3),
        "direct_p99_ms": round(p99(samples["direct"]), 3),
        "proxied_p99_ms": round(p99(samples["proxied"]), 3),
        "added_ms": round(statistics.median(added), 3),
        "proxy_cpu_us_per_call": round(cpu_s * 1e6 / (rounds * calls), 1),
    }


def pipeline_rate(stack: Stack, offered_msg_s: float, rounds: int = RATE_ROUNDS) -> dict[str, Any]:
    """The pipeline's stored rate offered `offered_msg_s`, behind the proxy (no rules set) and not, in
    interleaved rounds; the stack is left as it was found."""
    backend = stack.backend
    if not isinstance(backend, EmbeddedBackend):
        raise TestbedError("the fault proxy's bench needs an emulator this project runs (embedded, localstack)")
    was = backend.api_faults
    rates: dict[str, list[float]] = {"direct": [], "proxied": []}
    try:
        for n in range(rounds):
            for name in ("direct", "proxied") if n % 2 == 0 else ("proxied", "direct"):
                stack.use_api_faults(name == "proxied")
                stack.up()
                step = run_step(stack, RATE_DEVICES, offered_msg_s, RATE_STEP_S, seed=n)
                rates[name].append(float(step.stored_msg_s) if not step.lost else 0.0)
    finally:
        stack.use_api_faults(was)
        stack.up()
    direct, proxied = statistics.median(rates["direct"]), statistics.median(rates["proxied"])
    share = round(float(proxied / direct), 3) if direct else None
    return {
        "offered_msg_s": offered_msg_s,
        "direct_msg_s": rates["direct"],
        "proxied_msg_s": rates["proxied"],
        "proxied_share": share,
        "within_goal": share is not None and share >= RATE_SHARE_GOAL,
    }
