"""The fleet on Locust's distributed runner: a master and two workers on loopback against the stack,
each worker one shard; the merged run reconciles message by message, and a killed worker is its
shard missing."""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import pytest
from rich.console import Console

from testbed.lifecycle.stack import Stack
from testbed.runs import locust_run
from testbed.runs.shards import merge

pytestmark = pytest.mark.e2e
SCENARIO = """\
name: on-locust
fleet: simulator/fleets/smoke.yaml
seed: 4
duration_s: 8
qos: 1
drain_timeout_s: 60
"""


def _scenario(tmp_path: Path) -> str:
    path = tmp_path / "on-locust.yaml"
    path.write_text(SCENARIO)
    return str(path)


def test_a_master_and_two_workers_publish_disjoint_shards_that_reconcile(stack: Stack, tmp_path: Path) -> None:
    run = locust_run.start(stack, _scenario(tmp_path), 2, tmp_path / "reports")
    run.wait(120)
    assert run.master.returncode == 0, (run.folder / "locust.log").read_text()[-3000:]
    summaries = [json.loads((run.folder / f"shard-{i}.json").read_text()) for i in range(2)]
    assert not set(summaries[0]["per_device"]) & set(summaries[1]["per_device"]), "the workers' devices overlap"
    merged = merge(stack, run.folder, Console(quiet=True))
    report = json.loads((merged.folder / "report.json").read_text())
    assert report["passed"], report["measured"]
    assert report["counts"]["unaccounted"] == 0 and report["shards"]["merged"] == ["0/2", "1/2"]
    # Locust's own statistics count every acknowledged or failed publish of both workers
    with (run.folder / "locust_stats.csv").open() as stats:
        (total,) = [row for row in csv.DictReader(stats) if row["Name"] == "Aggregated"]
    sent = sum(len(r["acked"]) + len(r["failed"]) for s in summaries for r in s["per_device"].values())
    assert int(total["Request Count"]) == sent
    assert (run.folder / "locust.html").stat().st_size > 10_000


def test_a_killed_worker_is_its_shard_missing(stack: Stack, tmp_path: Path) -> None:
    run = locust_run.start(stack, _scenario(tmp_path), 2, tmp_path / "reports")
    # mid-run: once both workers have their users (a loaded machine takes seconds to start Locust;
    # a worker killed before it connects leaves the master waiting for it, not a shard missing)
    log, deadline = run.folder / "locust.log", time.monotonic() + 90
    while "All users spawned" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and run.master.poll() is None, "the workers never got their users"
        time.sleep(0.2)
    time.sleep(2)
    run.workers[1].send_signal(signal.SIGKILL)
    run.wait(120)
    merged = merge(stack, run.folder, Console(quiet=True))
    report = json.loads((merged.folder / "report.json").read_text())
    assert not report["passed"]
    (missing,) = report["shards"]["missing"]
    assert missing["planned_messages"] > 0 and "did not finish" in missing["reason"]
    assert report["counts"]["unaccounted"] == 0, "the other worker's shard reconciles"
