"""A scenario run's checks and report (testbed/runs/report.py), from made-up outcomes."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest

from testbed.cost.bill import cost_section
from testbed.cost.prices import load_prices
from testbed.cost.traffic import plan
from testbed.lifecycle.backends import EmbeddedBackend
from testbed.lifecycle.stack import Stack
from testbed.runs import provenance
from testbed.runs.hops import hop_samples
from testbed.runs.reconcile import check_plan, reconcile
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
        plan=check_plan({"a": [1, 2, 3]}, summary),
        broker_refusals={},
        emulator="ministack 1.5.33",
        cost=cost_section(plan(rate_msg_s=1.5, devices=1, payload_bytes=300, seconds=2), load_prices()),
        hops_ms=hop_samples([0, 0, 0], [10, 20, None], [30, 25, 40], [50, 100, 60]),
        provenance={"report_schema": provenance.REPORT_SCHEMA_VERSION},
    )


def test_the_markdown_report_itemizes_the_cost_or_says_why_it_has_none(tmp_path: Path) -> None:
    report = write_report(tmp_path, outcome())
    text = (tmp_path / "report.md").read_text()
    assert "## What this traffic would cost on AWS" in text and "us-east-1 as of 2026-11-30" in text
    run, month = report["cost"]["run"], report["cost"]["month"]
    total = f"| **total** | **{run['total_usd']:.6f}** | **{month['total_usd']:,.2f}** |"
    assert total in text
    assert "publish through Basic Ingest:" in text
    failed = write_report(tmp_path / "none", dataclasses.replace(outcome(), cost={"error": "no log group"}))
    assert failed["cost"] == {"error": "no log group"}
    assert "Not counted: no log group" in (tmp_path / "none" / "report.md").read_text()


def test_each_hop_is_timed_from_the_items_that_carry_it_and_the_slowest_is_named(tmp_path: Path) -> None:
    hops = hop_samples([0, 0, 0], [10, 20, None], [30, 25, 40], [50, 100, 60])
    assert {hop: list(ms) for hop, ms in hops.items()} == {
        "device to rule hand-off": [10.0, 20.0],
        "rule to processor": [20.0, 5.0],
        "processor to write": [20.0, 75.0],
    }, "the third item carries no arrival: an item from before hops were timed"
    report = write_report(tmp_path, outcome())
    assert report["hop_latency_ms"]["processor to write"]["p95"] == 72.25
    assert report["slowest_hop"] == "processor to write"
    assert "device to broker ack" in report["hop_latency_ms"], "the simulator's own hop"
    assert "slowest hop: processor to write" in (tmp_path / "report.md").read_text()
    assert write_report(tmp_path / "untimed", dataclasses.replace(outcome(), hops_ms={}))["slowest_hop"] is None


def test_a_clean_run_passes_every_check_and_a_lost_message_fails_one() -> None:
    assert all(check.held for check in checks(outcome()).values())
    failed = {name: check.measured for name, check in checks(outcome(lost=True)).items() if not check.held}
    assert failed == {"unaccounted <= 0": "1 unaccounted (lost): a:3"}


def test_a_run_whose_planned_faults_were_not_injected_does_not_pass() -> None:
    held = checks(outcome("chaos"))
    planned = len(load_scenario("chaos").faults)
    assert held[f"all {planned} faults injected"] == (False, f"0 of {planned} injected")


def test_the_report_folder_holds_the_json_markdown_html_junit_and_four_plots(tmp_path: Path) -> None:
    report = write_report(tmp_path, outcome())
    assert report["passed"] and report["counts"]["stored"] == 3 and report["throughput_msg_s"] == 3.0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hops.png",
        "junit.xml",
        "lag.png",
        "latency.png",
        "report.html",
        "report.json",
        "report.md",
        "throughput.png",
    ]
    assert "PASSED" in (tmp_path / "report.md").read_text().splitlines()[0]


def test_junit_has_one_case_per_check_and_a_failure_with_what_was_measured(tmp_path: Path) -> None:
    report = write_report(tmp_path, outcome(lost=True))
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    cases = suite.findall("testcase")
    assert suite.tag == "testsuite" and suite.get("name") == "scenario smoke"
    assert [c.get("name") for c in cases] == list(report["checks"])
    assert suite.get("tests") == str(len(cases)) and suite.get("failures") == "1"
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["unaccounted <= 0"]
    failure = failed[0].find("failure")
    assert failure is not None and failure.get("message") == "1 unaccounted (lost): a:3"
    assert "| unaccounted <= 0 | FAILED | 1 unaccounted (lost): a:3 |" in (tmp_path / "report.md").read_text()


def test_the_archive_hop_is_reported_but_never_named_the_slowest(tmp_path: Path) -> None:
    """On AWS the archive waits for Firehose's buffer (a minute): it would always be the slowest hop,
    though it is off the path a stored reading takes."""
    timed = outcome()
    archived = dataclasses.replace(timed, hops_ms={**timed.hops_ms, "write to archive": np.array([60_000.0, 61_000.0])})
    report = write_report(tmp_path, archived)
    assert report["hop_latency_ms"]["write to archive"]["p50"] == 60_500.0
    assert report["slowest_hop"] == "processor to write"
    assert "| write to archive | 60500.0 |" in (tmp_path / "report.md").read_text()
    assert "write to archive" not in write_report(tmp_path / "none", timed)["hop_latency_ms"]


def test_a_run_that_published_less_than_its_plan_fails_naming_the_ids(tmp_path: Path) -> None:
    """A simulator that stopped halfway: its own counts agree with themselves, the plan does not."""
    short = outcome()
    stopped = dataclasses.replace(short, plan=check_plan({"a": [1, 2, 3, 4, 5]}, short.summary))
    report = write_report(tmp_path, stopped)
    assert not report["passed"] and not report["checks"]["every planned message published"]
    measured = report["measured"]["every planned message published"]
    assert measured.startswith("3 of 5 planned messages published; 2 never published: a:4, a:5")
    assert report["plan"]["not_published_ids"] == ["a:4", "a:5"]
    assert write_report(tmp_path / "whole", short)["checks"]["every planned message published"]


def test_text_from_a_summary_or_a_price_file_is_literal_in_the_markdown(tmp_path: Path) -> None:
    """A shard's reason or a price file's basis with `|`, `[` or `<` in it broke the table, made a
    link or injected HTML into report.md."""
    hostile = "x | y [click](http://evil) <img src=x> *bold*\nnext"
    cost = {"error": hostile}
    run = dataclasses.replace(outcome(lost=True), cost=cost)
    write_report(tmp_path, run)
    text = (tmp_path / "report.md").read_text()
    assert "Not counted: x \\| y \\[click\\](http://evil) \\<img src=x\\> \\*bold\\* next" in text
    assert not re.search(r"(?<!\\)<img|(?<!\\)\[click", text)


def test_every_report_says_where_it_came_from_so_two_can_be_compared(tmp_path: Path) -> None:
    stack = Stack(EmbeddedBackend(state_dir=tmp_path / "state"))
    found = provenance.provenance(stack, load_scenario("smoke"))
    assert found["report_schema"] == provenance.REPORT_SCHEMA_VERSION and found["backend"] == "embedded"
    assert re.fullmatch(r"[0-9a-f]{40}(\+changes)?", found["commit"]), found["commit"]
    assert found["seed"] == load_scenario("smoke").seed
    assert found["fleet_sha256"] == hashlib.sha256(load_scenario("smoke").fleet.read_bytes()).hexdigest()
    assert re.fullmatch(r"\d+\.\d+\.\d+", found["terraform"]), found
    report = write_report(tmp_path / "run", dataclasses.replace(outcome(), provenance=found))
    assert report["provenance"] == found
    assert f"commit {found['commit']}" in (tmp_path / "run" / "report.md").read_text().replace("\\+", "+")
    properties = {
        p.get("name"): p.get("value") for p in ElementTree.parse(tmp_path / "run" / "junit.xml").iter("property")
    }
    assert properties["fleet_sha256"] == found["fleet_sha256"] and properties["report_schema"] == str(
        provenance.REPORT_SCHEMA_VERSION
    )
    assert f"fleet_sha256 {found['fleet_sha256']}" in (tmp_path / "run" / "report.html").read_text()


def test_a_part_of_the_provenance_that_cannot_be_read_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provenance, "ROOT", tmp_path)  # not a git checkout
    assert provenance.commit() == provenance.UNKNOWN
    moved = load_scenario("smoke").model_copy(update={"fleet": tmp_path / "gone.yaml"})
    assert provenance.fleet_sha256(moved) == provenance.UNKNOWN
