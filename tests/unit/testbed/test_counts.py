"""The counts' one vocabulary (toolkit/counts.py): every report shows each count under its one label,
and the sums add up on hand-made runs that hold every fate, and fail on a run whose counts do not."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from xml.etree import ElementTree

from simulator.summary import RunSummary
from testbed.runs.reconcile import check_plan, reconcile, run_counts
from testbed.runs.report import checks, write_report
from tests.unit.testbed.test_reconcile import body, summary
from tests.unit.testbed.test_report import outcome
from toolkit.counts import MEANINGS, QOS0_FORM, SUMS, Count, glossary_markdown, label, sums

ADDS_UP = "the counts add up"


def every_fate() -> tuple[RunSummary, dict[str, int]]:
    """Device a: 1 stored, 2 sent twice and stored once, 3 quarantined, 4 dead-lettered, 5 lost, 6 failed
    yet stored (its PUBACK lost), 7 failed; 8 and 9 planned and never sent."""
    run = summary(
        {"a": [1, 2, 2, 3, 4, 5]},
        {"a": {2: ["duplicate"], 3: ["bad_signature"], 4: ["malformed:invalid_json"]}},
    )
    run["per_device"]["a"]["failed"] = [6, 7]
    run["per_device"]["a"]["publishes"] += 2
    run["publishes"] += 2
    run["failed"] = 2
    run["refused_connections"] = 4
    result = reconcile(
        run,
        [("a", 1), ("a", 2), ("a", 6)],
        [{"reason": "bad_signature", "body": body("a", 3)}],
        ['{"device_id":"a","msg_id":4,"read'],
    )
    return run, run_counts(check_plan({"a": list(range(1, 10))}, run), run, result)


def test_every_fate_is_counted_once_under_its_name_and_the_sums_hold() -> None:
    _, counts = every_fate()
    assert counts == {
        "planned": 9,
        "publishes": 8,
        "duplicate_sends": 1,
        "resends": 0,
        "acknowledged": 5,
        "failed": 2,
        "not_sent": 2,
        "unplanned": 0,
        "refused_connections": 4,
        "stored": 2,
        "quarantined": 1,
        "dead_lettered": 1,
        "throttled": 0,
        "unaccounted": 1,
        "duplicates_dropped": 1,
        "arrived_unacknowledged": 1,
        "throttled_publishes": 0,
    }
    assert list(counts) == [c.value for c in Count]
    assert all(sums(counts).values()), sums(counts)


def test_a_publish_the_simulator_lost_track_of_breaks_a_sum_and_the_run_fails() -> None:
    """A message handed to the client that ended neither acknowledged nor failed: the publishes no
    longer add up, and the run cannot pass whatever else held."""
    clean = outcome()
    summary_ = {**clean.summary, "publishes": clean.summary["publishes"] + 1}
    broken = dataclasses.replace(clean, summary=summary_)  # type: ignore[arg-type]
    assert checks(clean)[ADDS_UP].held
    held = checks(broken)[ADDS_UP]
    assert not held.held and "publishes = acknowledged + failed + duplicate sends: NO" in held.measured


def test_an_unplanned_message_is_on_the_planned_side_of_its_sum() -> None:
    run = summary({"a": [1, 2]})
    counts = run_counts(check_plan({"a": [1]}, run), run, reconcile(run, [("a", 1), ("a", 2)], [], []))
    assert (counts["planned"], counts["unplanned"], counts["acknowledged"]) == (1, 1, 2)
    assert sums(counts)["planned + unplanned = acknowledged + failed + not sent"]


def test_every_report_shows_every_count_by_its_label_and_no_other_name(tmp_path: Path) -> None:
    report = write_report(tmp_path, outcome(lost=True))
    counts = report["counts"]
    assert list(counts) == [c.value for c in Count]
    for retired in ("published", "acked", "acked_ratio", "lost", "stored", "publish_failures", "connect_errors"):
        assert retired not in report, f"{retired} is a count outside the vocabulary"
    assert report["sums"] == sums(counts) and all(report["sums"].values())
    markdown = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    for count in Count:
        shown = f"{label(count)} {counts[count]:,}"
        assert shown in markdown, shown
        assert f"<td>{label(count)}</td><td>{counts[count]:,}</td>" in html, count
    properties = {p.get("name"): p.get("value") for p in ElementTree.parse(tmp_path / "junit.xml").iter("property")}
    assert {c.value: str(counts[c]) for c in Count}.items() <= properties.items()
    assert not re.search(r"\b(acked|errors)\b", markdown), "a count named outside the vocabulary"
    json.dumps(report)


def test_the_glossary_defines_every_count_and_states_every_sum_and_the_qos_0_form() -> None:
    text = glossary_markdown()
    for count, meaning in MEANINGS.items():
        assert f"| {meaning.label} | `{count.value}` |" in text
    assert len(MEANINGS) == len(Count)
    for total, parts in SUMS:
        assert " + ".join(label(p) for p in parts) in text and label(total) in text
    assert "At QoS 0 nothing is acknowledged" in text and QOS0_FORM in text


def test_a_qos_0_report_states_its_form_of_the_sums(tmp_path: Path) -> None:
    run = outcome()
    qos0 = dataclasses.replace(run, scenario=run.scenario.model_copy(update={"qos": 0}))
    write_report(tmp_path, qos0)
    assert "at QoS 0; publishes = acknowledged" in (tmp_path / "report.md").read_text()
    assert QOS0_FORM in (tmp_path / "report.md").read_text()
    write_report(tmp_path / "one", run)
    assert QOS0_FORM not in (tmp_path / "one" / "report.md").read_text()
