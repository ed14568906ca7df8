"""Reconciliation by message id: every acknowledged message is stored, quarantined with the
right reason, dead-lettered by the rule, or listed as lost; every fault is checked.

Pure functions over plain data, so the logic is tested with hand-made cases.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from processor.config import Threshold
from processor.store import StoredReading
from simulator.devices import EXPECTED_REJECTION, Fault
from simulator.summary import RunSummary
from toolkit.counts import Count

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
    """Where each acknowledged message ended (exactly one of stored, quarantined, dead-lettered,
    unaccounted: `lost`), whether that is where its faults say it should, and what is counted apart."""

    acknowledged: int = 0
    stored: int = 0
    quarantined: int = 0
    dead_lettered: int = 0
    throttled: int = 0  # dropped by the quota gate at QoS 0, as AWS IoT drops them: refused, not lost
    lost: list[MessageId] = field(default_factory=list)
    duplicates_dropped: int = 0
    arrived_unacknowledged: int = 0
    items_stored: int = 0  # the run's distinct items in the table, acknowledged or not (what the writes cost)
    quarantined_by_reason: Counter[str] = field(default_factory=Counter)  # quarantine records
    unexplained: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.unexplained

    def as_dict(self) -> dict[str, Any]:
        return {
            "quarantined_by_reason": dict(self.quarantined_by_reason),
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


def expected_stored(summary: RunSummary) -> int:
    """Acknowledged messages whose faults do not call for a rejection: they should all be stored."""
    count = 0
    for record in summary["per_device"].values():
        faults = {int(k): {base_fault(t) for t in v} for k, v in record["faults"].items()}
        count += sum(1 for m in set(record["acked"]) if not faults.get(m, set()) & EXPECTED_REJECTION.keys())
    return count


@dataclass
class PlanCheck:
    """The published ids against the run's plan (what the fleet, seed and duration say is sent): a
    simulator that stopped early, or a summary that names messages nobody planned, does not pass."""

    planned: int
    published: int
    not_published: list[MessageId] = field(default_factory=list)
    unplanned: list[MessageId] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.not_published and not self.unplanned

    def as_dict(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "published": self.published,
            "not_published": len(self.not_published),
            "not_published_ids": [f"{d}:{m}" for d, m in self.not_published[:100]],
            "unplanned": len(self.unplanned),
            "unplanned_ids": [f"{d}:{m}" for d, m in self.unplanned[:100]],
        }


def check_plan(plan: Mapping[str, Iterable[int]], summary: RunSummary) -> PlanCheck:
    """Every planned message was published (acknowledged or failed: a publish the simulator gave up
    on is its own failure), and nothing was published that the plan does not hold."""
    planned = {(device_id, msg_id) for device_id, ids in plan.items() for msg_id in ids}
    published = {
        (device_id, msg_id)
        for device_id, record in summary["per_device"].items()
        for msg_id in (*record["acked"], *record["failed"])
    }
    return PlanCheck(
        planned=len(planned),
        published=len(published & planned),
        not_published=sorted(planned - published),
        unplanned=sorted(published - planned),
    )


def run_counts(
    plan: PlanCheck, summary: RunSummary, result: Reconciliation, throttled_publishes: int = 0
) -> dict[str, int]:
    """Every count of toolkit/counts.py for one run, in its order; `throttled_publishes` from the
    quota gate's ledger, where one ran."""
    found = {
        Count.PLANNED: plan.planned,
        Count.PUBLISHES: summary["publishes"],
        Count.DUPLICATE_SENDS: summary["duplicate_sends"],
        Count.RESENDS: summary.get("resends", 0),
        Count.ACKNOWLEDGED: result.acknowledged,
        Count.FAILED: summary["failed"],
        Count.NOT_SENT: len(plan.not_published),
        Count.UNPLANNED: len(plan.unplanned),
        Count.REFUSED_CONNECTIONS: summary["refused_connections"],
        Count.STORED: result.stored,
        Count.QUARANTINED: result.quarantined,
        Count.DEAD_LETTERED: result.dead_lettered,
        Count.THROTTLED: result.throttled,
        Count.UNACCOUNTED: len(result.lost),
        Count.DUPLICATES_DROPPED: result.duplicates_dropped,
        Count.ARRIVED_UNACKNOWLEDGED: result.arrived_unacknowledged,
        Count.THROTTLED_PUBLISHES: throttled_publishes,
    }
    return {count.value: found[count] for count in Count}


def reconcile(
    summary: RunSummary,
    stored: list[MessageId],
    quarantined: list[dict[str, Any]],
    dead_lettered: list[str],
    throttled: frozenset[MessageId] = frozenset(),
) -> Reconciliation:
    """`summary`: the simulator's run summary; `stored`: (device, msg_id) of every DynamoDB item;
    `quarantined`: quarantine documents (reason, body); `dead_lettered`: original payloads in the DLQ;
    `throttled`: messages the quota gate refused (found nowhere, they are throttled, not lost)."""
    result = Reconciliation()
    stored_set = set(stored)
    result.items_stored = len(stored_set)
    duplicate_items = len(stored) - len(stored_set)
    reasons: dict[MessageId, set[str]] = defaultdict(set)
    for doc in quarantined:
        ident = identify(doc["body"])
        result.quarantined_by_reason[doc["reason"]] += 1
        if ident is not None:
            reasons[ident].add(doc["reason"])
    in_dlq = {ident for body in dead_lettered if (ident := identify(body)) is not None}
    fault_stats: dict[str, Counter[str]] = defaultdict(Counter)
    acknowledged: set[MessageId] = set()

    for device_id, record in summary["per_device"].items():
        faults = {int(k): {base_fault(t) for t in v} for k, v in record["faults"].items()}
        acks = Counter(record["acked"])
        for msg_id in acks:  # a duplicate send is one message
            ident = (device_id, msg_id)
            acknowledged.add(ident)
            tags = faults.get(msg_id, set())
            if Fault.DUPLICATE in tags and acks[msg_id] > 1 and ident in stored_set:
                result.duplicates_dropped += 1
            if ident in stored_set:
                result.stored += 1
            elif reasons[ident]:
                result.quarantined += 1
            elif ident in in_dlq:
                result.dead_lettered += 1
            outcome = _outcome(tags, ident in stored_set, reasons[ident], ident in in_dlq)
            for tag in tags:
                fault_stats[tag.value]["caught" if outcome in ("stored", "rejected") else "missed"] += 1
            if outcome == "lost" and ident in throttled:
                result.throttled += 1
            elif outcome == "lost":
                result.lost.append(ident)
            elif outcome == "wrong":
                found = sorted(reasons[ident]) + (["stored"] if ident in stored_set else [])
                found += ["dead_lettered"] if ident in in_dlq else []
                result.unexplained.append(
                    {"id": f"{device_id}:{msg_id}", "faults": sorted(t.value for t in tags), "found": found}
                )
    result.acknowledged = len(acknowledged)
    result.arrived_unacknowledged = len((stored_set | reasons.keys() | in_dlq) - acknowledged)
    if duplicate_items:
        result.unexplained.append({"id": "*", "faults": [], "found": f"{duplicate_items} duplicate item(s)"})
    result.faults = {name: dict(counts) for name, counts in sorted(fault_stats.items())}
    return result


BreachKey = tuple[str, str, str]  # (device_id, rule, reading)


@dataclass
class Episode:
    """Consecutive readings of one device's sensor beyond the same threshold."""

    rule: str
    start: int
    end: int
    readings: int = 1


def _rule_broken(bound: Threshold | None, value: float | bool) -> str | None:
    """The threshold rule a reading breaks, if any; booleans have no thresholds."""
    if bound is None or isinstance(value, bool):
        return None
    if bound.maximum is not None and value > bound.maximum:
        return "threshold_high"
    if bound.minimum is not None and value < bound.minimum:
        return "threshold_low"
    return None


def breach_episodes(
    stored_items: list[StoredReading], thresholds: dict[str, dict[str, Threshold]]
) -> dict[BreachKey, list[Episode]]:
    """Every episode per (device, rule, reading), in time order: a reading of that device's sensor
    within bounds, or beyond the other bound, ends it, so a later breach is a new episode to alert."""
    episodes: dict[BreachKey, list[Episode]] = defaultdict(list)
    ongoing: dict[tuple[str, str], Episode] = {}
    for item in sorted(stored_items, key=lambda i: i.ts):
        rules = thresholds.get(item.device_type, {})
        for reading, value in item.readings.items():
            series = (item.device_id, reading)
            rule = _rule_broken(rules.get(reading), value)
            episode = ongoing.get(series)
            if rule is None:
                ongoing.pop(series, None)
            elif episode is not None and episode.rule == rule:
                episode.end = item.ts
                episode.readings += 1
            else:
                ongoing[series] = Episode(rule, item.ts, item.ts)
                episodes[(item.device_id, rule, reading)].append(ongoing[series])
    return episodes


def check_alerts(
    stored_items: list[StoredReading],
    alerts: list[dict[str, Any]],
    thresholds: dict[str, dict[str, Threshold]],
    cooldown_s: float,
) -> dict[str, Any]:
    """Threshold alerts against the stored readings: every breach episode alerted unless the previous
    alert of its (device, rule, reading) is within the cooldown of all of it, every alert on a
    breaching reading, and no two alerts of one (device, rule, reading) closer than the cooldown."""
    episodes = breach_episodes(stored_items, thresholds)
    raised: dict[BreachKey, list[int]] = defaultdict(list)
    for alert in sorted(alerts, key=lambda a: a["ts"]):
        if alert["rule"].startswith("threshold"):
            raised[(alert["device_id"], alert["rule"], alert["reading"])].append(alert["ts"])
    cooldown_ms = cooldown_s * 1000
    missed = []
    for key, runs in episodes.items():
        times = raised.get(key, [])
        for run in runs:
            first_at_or_after = bisect_left(times, run.start)
            alerted = first_at_or_after < len(times) and times[first_at_or_after] <= run.end
            cooled = first_at_or_after > 0 and run.end - times[first_at_or_after - 1] < cooldown_ms
            if not (alerted or cooled):
                missed.append(f"{':'.join(key)}@{run.start}")
    without_breach = [
        f"{':'.join(key)}@{ts}"
        for key, times in raised.items()
        for ts in times
        if not any(run.start <= ts <= run.end for run in episodes.get(key, []))
    ]
    too_close = [
        f"{':'.join(key)}@{a},{b}" for key, times in raised.items() for a, b in pairwise(times) if b - a < cooldown_ms
    ]
    breaching = sum(run.readings for runs in episodes.values() for run in runs)
    threshold_alerts = sum(len(t) for t in raised.values())
    return {
        "breach_episodes": sum(len(runs) for runs in episodes.values()),
        "threshold_alerts": threshold_alerts,
        "anomaly_alerts": sum(1 for a in alerts if a["rule"] == "anomaly"),
        "suppressed_by_cooldown": breaching - threshold_alerts,
        "missed": sorted(missed),
        "without_breach": sorted(without_breach),
        "cooldown_violations": too_close,
        "ok": not (missed or without_breach or too_close),
    }
