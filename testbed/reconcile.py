"""Reconciliation by message id: every acknowledged message is stored, quarantined with the
right reason, dead-lettered by the rule, or listed as lost; every fault is checked.

Pure functions over plain data, so the logic is tested with hand-made cases.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from simulator.devices import EXPECTED_REJECTION, Fault

MessageId = tuple[str, int]
_DEVICE = re.compile(r'"device_id"\s*:\s*"([^"]+)"')
_MSG = re.compile(r'"msg_id"\s*:\s*"?(\d+)')


def identify(body: str) -> MessageId | None:
    """(device_id, msg_id) from a message body, even a broken one; None if it carries neither."""
    device, msg = _DEVICE.search(body), _MSG.search(body)
    return (device.group(1), int(msg.group(1))) if device and msg else None


def base_fault(tag: str) -> Fault:
    return Fault.SPIKE if tag.startswith("spike") else Fault(tag)


@dataclass
class Reconciliation:
    acked: int = 0
    stored: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    duplicates_dropped: int = 0
    lost: list[MessageId] = field(default_factory=list)
    unexplained: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.unexplained

    def as_dict(self) -> dict[str, Any]:
        return {
            "acked": self.acked,
            "stored": self.stored,
            "quarantined": dict(self.quarantined),
            "dead_lettered": self.dead_lettered,
            "duplicates_dropped": self.duplicates_dropped,
            "lost": len(self.lost),
            "lost_ids": [f"{d}:{m}" for d, m in self.lost[:100]],
            "unexplained": self.unexplained[:100],
            "faults": self.faults,
        }


def _outcome(tags: set[Fault], stored: bool, reasons: set[str], dead_lettered: bool) -> str:
    """stored | rejected (as its faults require) | wrong (somewhere, but not as expected) | lost."""
    expected = {EXPECTED_REJECTION[t] for t in tags if t in EXPECTED_REJECTION}
    if expected:
        if reasons & expected or (Fault.INVALID_JSON in tags and dead_lettered):
            return "rejected"
    elif stored:
        return "stored"
    elif Fault.CLOCK_SKEW in tags and reasons == {"timestamp_skew"}:
        return "rejected"
    return "wrong" if stored or reasons or dead_lettered else "lost"


def expected_stored(summary: dict[str, Any]) -> int:
    """Acknowledged messages whose faults do not call for a rejection: they should all be stored."""
    count = 0
    for record in summary["per_device"].values():
        faults = {int(k): {base_fault(t) for t in v} for k, v in record["faults"].items()}
        count += sum(1 for m in set(record["acked"]) if not faults.get(m, set()) & EXPECTED_REJECTION.keys())
    return count


def reconcile(
    summary: dict[str, Any],
    stored: list[MessageId],
    quarantined: list[dict[str, Any]],
    dead_lettered: list[str],
) -> Reconciliation:
    """`summary`: the simulator's run summary; `stored`: (device, msg_id) of every DynamoDB item;
    `quarantined`: quarantine documents (reason, body); `dead_lettered`: original payloads in the DLQ."""
    result = Reconciliation()
    stored_set = set(stored)
    result.stored = len(stored_set)
    duplicate_items = len(stored) - len(stored_set)
    reasons: dict[MessageId, set[str]] = defaultdict(set)
    for doc in quarantined:
        ident = identify(doc["body"])
        result.quarantined[doc["reason"]] += 1
        if ident is not None:
            reasons[ident].add(doc["reason"])
    in_dlq = {ident for body in dead_lettered if (ident := identify(body)) is not None}
    result.dead_lettered = len(dead_lettered)
    fault_stats: dict[str, Counter[str]] = defaultdict(Counter)

    for device_id, record in summary["per_device"].items():
        faults = {int(k): {base_fault(t) for t in v} for k, v in record["faults"].items()}
        for msg_id in dict.fromkeys(record["acked"]):  # a duplicate send is one message
            ident = (device_id, msg_id)
            tags = faults.get(msg_id, set())
            result.acked += 1
            if Fault.DUPLICATE in tags and record["acked"].count(msg_id) > 1 and ident in stored_set:
                result.duplicates_dropped += 1
            outcome = _outcome(tags, ident in stored_set, reasons[ident], ident in in_dlq)
            for tag in tags:
                fault_stats[tag.value]["caught" if outcome in ("stored", "rejected") else "missed"] += 1
            if outcome == "lost":
                result.lost.append(ident)
            elif outcome == "wrong":
                found = sorted(reasons[ident]) + (["stored"] if ident in stored_set else [])
                result.unexplained.append(
                    {"id": f"{device_id}:{msg_id}", "faults": sorted(t.value for t in tags), "found": found}
                )
    if duplicate_items:
        result.unexplained.append({"id": "*", "faults": [], "found": f"{duplicate_items} duplicate item(s)"})
    result.faults = {name: dict(counts) for name, counts in sorted(fault_stats.items())}
    return result


def check_alerts(
    stored_items: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
    thresholds: dict[str, dict[str, Any]],
    cooldown_s: float,
) -> dict[str, Any]:
    """Threshold alerts against the stored readings: every breach episode alerted, no alert without
    a breach, and no two alerts of one (device, rule, reading) closer than the cooldown."""
    breaches: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for item in stored_items:
        rules = thresholds.get(item["device_type"], {})
        for reading, value in item["readings"].items():
            bound = rules.get(reading)
            if bound is None or isinstance(value, bool):
                continue
            if bound.maximum is not None and value > bound.maximum:
                breaches[(item["device_id"], "threshold_high", reading)].append(item["ts"])
            elif bound.minimum is not None and value < bound.minimum:
                breaches[(item["device_id"], "threshold_low", reading)].append(item["ts"])
    raised: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for alert in alerts:
        if alert["rule"].startswith("threshold"):
            raised[(alert["device_id"], alert["rule"], alert["reading"])].append(alert["ts"])
    cooldown_ms = cooldown_s * 1000
    missed = [key for key in breaches if key not in raised]
    without_breach = [key for key in raised if key not in breaches]
    too_close = [
        key
        for key, times in raised.items()
        if any(b - a < cooldown_ms for a, b in zip(sorted(times), sorted(times)[1:], strict=False))
    ]
    return {
        "breach_episodes": len(breaches),
        "threshold_alerts": sum(len(t) for t in raised.values()),
        "anomaly_alerts": sum(1 for a in alerts if a["rule"] == "anomaly"),
        "suppressed_by_cooldown": sum(len(t) for t in breaches.values()) - sum(len(t) for t in raised.values()),
        "missed": [":".join(k) for k in missed],
        "without_breach": [":".join(k) for k in without_breach],
        "cooldown_violations": [":".join(k) for k in too_close],
        "ok": not (missed or without_breach or too_close),
    }
