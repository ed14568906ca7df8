"""A short scenario end to end: publish, drain, reconcile, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from testbed.lifecycle.stack import Stack
from testbed.runs.hops import ACK_HOP, ARCHIVE_HOP, HOPS
from testbed.runs.report_files import compare
from testbed.runs.runner import run_scenario
from testbed.runs.scenario import load_scenario

pytestmark = pytest.mark.e2e


def test_a_scenario_reconciles_exactly_and_writes_its_report(stack: Stack, tmp_path: Path) -> None:
    scenario_file = tmp_path / "tiny.yaml"
    scenario_file.write_text(
        "name: tiny\nfleet: simulator/fleets/faults.yaml\nseed: 3\nduration_s: 8\n"
        "expectations: {max_lost: 0, max_unexplained: 0}\n"
    )
    folder = run_scenario(stack, load_scenario(str(scenario_file)), Console(quiet=True), reports_dir=tmp_path).folder
    report = json.loads((folder / "report.json").read_text())
    for key in (
        "scenario",
        "started",
        "duration_s",
        "qos",
        "counts",
        "sums",
        "alerts",
        "throughput_msg_s",
        "e2e_latency_ms",
        "passed",
        "acknowledged_ratio",
        "failed_by_cause",
        "reconnects",
        "faults_injected",
    ):
        assert key in report
    assert report["passed"], [name for name, ok in report["checks"].items() if not ok]
    assert (
        report["counts"]["unaccounted"] == 0
        and report["counts"]["acknowledged"] > 200
        and report["acknowledged_ratio"] == 1.0
    )
    counts = report["counts"]
    accounted = counts["stored"] + counts["quarantined"] + counts["dead_lettered"]
    assert accounted == counts["acknowledged"], "every acknowledged message is stored, quarantined or dead-lettered"
    assert counts["duplicate_sends"] > 0 and counts["duplicates_dropped"] > 0, "the faults fleet sends duplicates"
    assert all(report["sums"].values()) and report["checks"]["the counts add up"]
    plots = ("throughput.png", "latency.png", "lag.png", "hops.png")
    assert all((folder / name).stat().st_size > 1000 for name in plots)
    hops = report["hop_latency_ms"]
    assert set(hops) == {ACK_HOP, *HOPS, ARCHIVE_HOP} and report["slowest_hop"] in HOPS, (
        "every stored item times its hops"
    )
    # the processor archives right after its write; ministack's Firehose writes at once, stamped to the ms
    assert 0 <= hops[ARCHIVE_HOP]["p50"] <= hops[ARCHIVE_HOP]["max"] < 5_000, hops[ARCHIVE_HOP]
    assert all(hops[hop]["p50"] >= 0 for hop in HOPS) and hops["device to rule hand-off"]["p50"] > 0
    assert "PASSED" in (folder / "report.md").read_text()
    cost = report["cost"]
    assert "run" in cost, cost
    quantity = {line["item"]: line["quantity"] for line in cost["run"]["lines"]}
    assert report["counts"]["acknowledged"] <= quantity["iot.messages"] <= 2 * report["counts"]["acknowledged"], (
        "5 KB units of small payloads"
    )
    assert report["counts"]["stored"] <= quantity["iot.actions_executed"] <= 1.05 * report["counts"]["acknowledged"]
    assert quantity["lambda.requests"] > 0 and quantity["lambda.gb_seconds"] > 0, cost["basis"]
    assert quantity["dynamodb.write_request_units"] >= report["counts"]["stored"]
    assert quantity["firehose.ingested_gb"] > 0 and quantity["logs.ingested_gb"] > 0
    assert quantity["s3.put_requests"] >= report["counts"]["quarantined"]
    assert cost["month"]["total_usd"] > cost["run"]["total_usd"] > 0
    assert "What this traffic would cost on AWS" in (folder / "report.md").read_text()
    rows = dict((name, (a, b)) for name, a, b in compare(folder, folder))
    assert rows["unaccounted"] == (0, 0)
