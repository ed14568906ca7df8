"""A scenario run's checks and report (testbed/runs/report.py), from made-up outcomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from testbed.runs.reconcile import reconcile
from testbed.runs.report import RunOutcome, checks, write_report
from testbed.runs.scenario import load_scenario
from tests.unit.testbed.test_reconcile import summary as run_summary


def outcome(scenario: str = "smoke", faults: list[dict[str, Any]] | None = None, lost: bool = False) -> RunOutcome:
    summary = run_summary({"a": [1, 2, 3]})
    summary["sent_per_s"] = {"1767225601": 3}
    stored = [("a", 1), ("a", 2)] if lost else [("a", 1), ("a", 2), ("a", 3)]
    return RunOutcome(
        run_id="r1",
        scenario=load_scenario(scenario),
        ingress="direct",
        started=1_767_225_600.0,
        summary=summary,
        result=reconcile(summary, stored, [], []),
        alert_check={"ok": True},
        alerts=0,
        drained=True,
        stored_at_s=np.array([1_767_225_601.0, 1_767_225_601.5, 1_767_225_602.0][: len(stored)]),
        latency_ms=np.array([80.0, 90.0, 100.0][: len(stored)]),
        emulator_rss_mb=None,
        faults=faults or [],
    )


def test_a_clean_run_passes_every_check_and_a_lost_message_fails_one() -> None:
    assert all(checks(outcome()).values())
    failed = [name for name, held in checks(outcome(lost=True)).items() if not held]
    assert failed == ["lost <= 0"]


def test_a_run_whose_planned_faults_were_not_injected_does_not_pass() -> None:
    held = checks(outcome("chaos"))
    assert held[f"all {len(load_scenario('chaos').faults)} faults injected"] is False


def test_the_report_folder_holds_the_json_the_markdown_and_three_plots(tmp_path: Path) -> None:
    report = write_report(tmp_path, outcome())
    assert report["passed"] and report["stored"] == 3 and report["throughput_msg_s"] == 3.0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lag.png",
        "latency.png",
        "report.json",
        "report.md",
        "throughput.png",
    ]
    assert "PASSED" in (tmp_path / "report.md").read_text().splitlines()[0]
