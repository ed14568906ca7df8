"""Reconciliation with hand-made cases: stored, lost, duplicated, quarantined, unexplained."""

from __future__ import annotations

import json
from typing import Any

from processor.config import Threshold
from testbed.reconcile import check_alerts, expected_stored, identify, reconcile


def summary(acked: dict[str, list[int]], faults: dict[str, dict[int, list[str]]] | None = None) -> dict[str, Any]:
    faults = faults or {}
    return {
        "per_device": {
            d: {
                "published": len(ids),
                "acked": ids,
                "failed": [],
                "faults": {str(k): v for k, v in faults.get(d, {}).items()},
            }
            for d, ids in acked.items()
        }
    }


def body(device: str, msg_id: int) -> str:
    return json.dumps({"device_id": device, "msg_id": msg_id})


def test_everything_stored_reconciles() -> None:
    r = reconcile(summary({"a": [1, 2], "b": [1]}), [("a", 1), ("a", 2), ("b", 1)], [], [])
    assert r.ok and (r.acked, r.stored, r.lost) == (3, 3, [])


def test_a_missing_message_is_lost_by_id() -> None:
    r = reconcile(summary({"a": [1, 2, 3]}), [("a", 1), ("a", 3)], [], [])
    assert not r.ok and r.lost == [("a", 2)]


def test_a_duplicate_send_is_stored_once() -> None:
    r = reconcile(summary({"a": [1, 1, 2]}, {"a": {1: ["duplicate"]}}), [("a", 1), ("a", 2)], [], [])
    assert r.ok and r.acked == 2 and r.duplicates_dropped == 1
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
    assert r.quarantined == {"bad_signature": 1, "schema_violation": 1, "too_large": 1}
    assert r.faults["bad_signature"] == {"caught": 1}


def test_a_faulty_message_that_was_stored_is_unexplained() -> None:
    r = reconcile(summary({"a": [1]}, {"a": {1: ["bad_signature"]}}), [("a", 1)], [], [])
    assert not r.ok and r.unexplained[0]["found"] == ["stored"]
    assert r.faults["bad_signature"] == {"missed": 1}


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


def item(device: str, ts: int, temperature: float) -> dict[str, Any]:
    return {"device_id": device, "device_type": "environmental", "ts": ts, "readings": {"temperature": temperature}}


def alert(device: str, ts: int) -> dict[str, Any]:
    return {"device_id": device, "rule": "threshold_high", "reading": "temperature", "ts": ts}


THRESHOLDS = {"environmental": {"temperature": Threshold(None, 45.0, "critical")}}


def test_a_stuck_high_sensor_alerts_once_per_cooldown() -> None:
    items = [item("a", t * 1000, 60.0) for t in range(0, 100)] + [item("b", 0, 20.0)]
    result = check_alerts(items, [alert("a", 0)], THRESHOLDS, cooldown_s=300)
    assert result["ok"] and result["suppressed_by_cooldown"] == 99


def test_missed_alerts_extra_alerts_and_cooldown_violations_are_reported() -> None:
    items = [item("a", 0, 60.0), item("b", 0, 60.0)]
    result = check_alerts(items, [alert("a", 0), alert("a", 10_000), alert("c", 0)], THRESHOLDS, cooldown_s=300)
    assert not result["ok"]
    assert result["missed"] == ["b:threshold_high:temperature"]
    assert result["without_breach"] == ["c:threshold_high:temperature"]
    assert result["cooldown_violations"] == ["a:threshold_high:temperature"]


def test_expected_stored_leaves_out_what_must_be_rejected() -> None:
    s = summary({"a": [1, 2, 2, 3, 4]}, {"a": {2: ["duplicate"], 3: ["bad_signature"], 4: ["spike:co2"]}})
    assert expected_stored(s) == 3
