"""Reconciliation with hand-made cases: stored, lost, duplicated, quarantined, unexplained."""

from __future__ import annotations

import json
from typing import Any

from processor.config import Threshold
from processor.store import StoredReading
from simulator.summary import DeviceSummary, RunSummary
from telemetry.schema import sort_key
from testbed.runs.reconcile import check_alerts, expected_stored, identify, reconcile


def summary(acked: dict[str, list[int]], faults: dict[str, dict[int, list[str]]] | None = None) -> RunSummary:
    """A run in which each device's `acked` msg_ids were published and acknowledged, with `faults`."""
    faults = faults or {}
    per_device: dict[str, DeviceSummary] = {
        d: {
            "publishes": len(ids),
            "acked": ids,
            "acked_due": [],
            "failed": [],
            "faults": {str(k): v for k, v in faults.get(d, {}).items()},
        }
        for d, ids in acked.items()
    }
    published = sum(len(ids) for ids in acked.values())
    distinct = sum(len(set(ids)) for ids in acked.values())
    tagged = sum(tags.count("duplicate") for device in faults.values() for tags in device.values())
    return {
        "publishes": published,
        "duplicate_sends": tagged,
        "acknowledged": distinct,
        "failed": 0,
        "failed_by_cause": {},
        "reconnects": 0,
        "refused_connections": 0,
        "send_lateness_ms": {},
        "send_span_s": 0.0,
        "sent_per_s": {},
        "ack_latency_ms": {},
        "payload_sizes": {"300": published},
        "per_device": per_device,
    }


def body(device: str, msg_id: int) -> str:
    return json.dumps({"device_id": device, "msg_id": msg_id})


def test_everything_stored_reconciles() -> None:
    r = reconcile(summary({"a": [1, 2], "b": [1]}), [("a", 1), ("a", 2), ("b", 1)], [], [])
    assert r.ok and (r.acknowledged, r.stored, r.lost) == (3, 3, [])


def test_a_missing_message_is_lost_by_id() -> None:
    r = reconcile(summary({"a": [1, 2, 3]}), [("a", 1), ("a", 3)], [], [])
    assert not r.ok and r.lost == [("a", 2)]


def test_a_duplicate_send_is_stored_once() -> None:
    r = reconcile(summary({"a": [1, 1, 2]}, {"a": {1: ["duplicate"]}}), [("a", 1), ("a", 2)], [], [])
    assert r.ok and r.acknowledged == 2 and r.duplicates_dropped == 1
    assert r.faults["duplicate"] == {"caught": 1}


def test_a_duplicate_item_in_the_table_is_unexplained() -> None:
    r = reconcile(summary({"a": [1]}), [("a", 1), ("a", 1)], [], [])
    assert not r.ok and "duplicate item" in r.unexplained[0]["found"]


def test_faulty_messages_found_with_the_right_reason() -> None:
    s = summary(
        {"a": [1, 2, 3, 4]},
        {
            "a": {
                1: ["bad_signature"],
                2: ["malformed:wrong_type"],
                3: ["malformed:invalid_json"],
                4: ["malformed:oversized"],
            }
        },
    )
    quarantine = [
        {"reason": "bad_signature", "body": body("a", 1)},
        {"reason": "schema_violation", "body": '{"device_id": "a", "msg_id": "2"}'},
        {"reason": "too_large", "body": body("a", 4)},
    ]
    dlq = ['{"device_id":"a","msg_id":3,"readings":{"te']  # truncated JSON, dead-lettered by the rule
    r = reconcile(s, [], quarantine, dlq)
    assert r.ok, r.unexplained
    assert r.quarantined_by_reason == {"bad_signature": 1, "schema_violation": 1, "too_large": 1}
    assert (r.quarantined, r.dead_lettered, r.stored) == (3, 1, 0)
    assert r.faults["bad_signature"] == {"caught": 1}


def test_a_faulty_message_that_was_stored_is_unexplained() -> None:
    r = reconcile(summary({"a": [1]}, {"a": {1: ["bad_signature"]}}), [("a", 1)], [], [])
    assert not r.ok and r.unexplained[0]["found"] == ["stored"]
    assert r.faults["bad_signature"] == {"missed": 1}


def test_a_faulty_message_quarantined_for_the_wrong_reason_is_unexplained() -> None:
    """Being quarantined (or dead-lettered, which only invalid JSON may be) is not enough: the
    reason must be the one its fault calls for."""
    s = summary({"a": [1, 2, 3]}, {"a": {1: ["bad_signature"], 2: ["malformed:oversized"], 3: ["bad_signature"]}})
    quarantine = [
        {"reason": "schema_violation", "body": body("a", 1)},
        {"reason": "internal_error", "body": body("a", 2)},
    ]
    r = reconcile(s, [], quarantine, [body("a", 3)])
    assert not r.ok
    assert r.unexplained == [
        {"id": "a:1", "faults": ["bad_signature"], "found": ["schema_violation"]},
        {"id": "a:2", "faults": ["malformed:oversized"], "found": ["internal_error"]},
        {"id": "a:3", "faults": ["bad_signature"], "found": ["dead_lettered"]},
    ]
    assert r.faults == {"bad_signature": {"missed": 2}, "malformed:oversized": {"missed": 1}}


def test_a_clean_message_quarantined_is_unexplained_unless_its_clock_was_skewed() -> None:
    quarantine = [{"reason": "timestamp_skew", "body": body("a", 1)}]
    assert not reconcile(summary({"a": [1]}), [], quarantine, []).ok
    assert reconcile(summary({"a": [1]}, {"a": {1: ["clock_skew"]}}), [], quarantine, []).ok


def test_spiked_and_stuck_messages_must_be_stored() -> None:
    s = summary({"a": [1, 2]}, {"a": {1: ["spike:temperature"], 2: ["stuck"]}})
    r = reconcile(s, [("a", 1), ("a", 2)], [], [])
    assert r.ok and r.faults == {"spike": {"caught": 1}, "stuck": {"caught": 1}}


def test_identify_reads_broken_bodies() -> None:
    assert identify('{"device_id":"x-1","msg_id":"17"') == ("x-1", 17)
    assert identify("garbage") is None


def item(device: str, ts: int, temperature: float) -> StoredReading:
    return StoredReading(device, sort_key(ts, 1), 1, ts, "environmental", "1.0.0", {"temperature": temperature}, ts, 0)


def alert(device: str, ts: int) -> dict[str, Any]:
    return {"device_id": device, "rule": "threshold_high", "reading": "temperature", "ts": ts}


THRESHOLDS = {"environmental": {"temperature": Threshold(None, 45.0, "critical")}}


def test_a_stuck_high_sensor_alerts_once_per_cooldown() -> None:
    items = [item("a", t * 1000, 60.0) for t in range(0, 100)] + [item("b", 0, 20.0)]
    result = check_alerts(items, [alert("a", 0)], THRESHOLDS, cooldown_s=300)
    assert result["ok"] and result["suppressed_by_cooldown"] == 99


def test_missed_alerts_extra_alerts_and_cooldown_violations_are_reported() -> None:
    items = [item("a", 0, 60.0), item("a", 10_000, 60.0), item("b", 0, 60.0), item("b", 5_000, 20.0)]
    alerts = [alert("a", 0), alert("a", 10_000), alert("b", 5_000), alert("c", 0)]
    result = check_alerts(items, alerts, THRESHOLDS, cooldown_s=300)
    assert not result["ok"]
    assert result["missed"] == ["b:threshold_high:temperature@0"]
    assert result["without_breach"] == ["b:threshold_high:temperature@5000", "c:threshold_high:temperature@0"]
    assert result["cooldown_violations"] == ["a:threshold_high:temperature@0,10000"], "which alerts, when"


def episodes(*runs: tuple[int, int]) -> list[StoredReading]:
    """Device a too hot for each (first s, last s) run, within bounds the second before and after."""
    items = []
    for first, last in runs:
        items += [item("a", (first - 1) * 1000, 20.0), item("a", (last + 1) * 1000, 20.0)]
        items += [item("a", t * 1000, 60.0) for t in range(first, last + 1)]
    return items


def test_every_breach_episode_needs_its_alert_unless_the_last_one_is_still_cooling_down() -> None:
    result = check_alerts(episodes((0, 10), (600, 610)), [alert("a", 0)], THRESHOLDS, cooldown_s=300)
    assert not result["ok"] and result["missed"] == ["a:threshold_high:temperature@600000"]
    assert result["breach_episodes"] == 2
    result = check_alerts(episodes((0, 10), (600, 610)), [alert("a", 0), alert("a", 600_000)], THRESHOLDS, 300)
    assert result["ok"], result
    assert check_alerts(episodes((0, 10), (100, 110)), [alert("a", 0)], THRESHOLDS, 300)["ok"], "still cooling down"
    result = check_alerts(episodes((0, 10), (100, 400)), [alert("a", 0)], THRESHOLDS, cooldown_s=300)
    assert result["missed"] == ["a:threshold_high:temperature@100000"], "it outlasted the cooldown, unalerted"


def test_a_breach_of_the_other_bound_is_an_episode_of_its_own() -> None:
    thresholds = {"environmental": {"temperature": Threshold(-10.0, 45.0, "critical")}}
    items = [item("a", 0, 60.0), item("a", 1000, -20.0), item("a", 2000, 60.0)]
    alerts = [alert("a", 0), {**alert("a", 1000), "rule": "threshold_low"}]
    result = check_alerts(items, alerts, thresholds, cooldown_s=300)
    assert result["breach_episodes"] == 3 and result["ok"], "the second high episode is within the cooldown"


def test_expected_stored_leaves_out_what_must_be_rejected() -> None:
    s = summary({"a": [1, 2, 2, 3, 4]}, {"a": {2: ["duplicate"], 3: ["bad_signature"], 4: ["spike:co2"]}})
    assert expected_stored(s) == 3
