"""The counts of a run, each with one name and one meaning: the simulator's live line and summary,
and every report (report.json, report.md, the HTML page, junit.xml) use these names and labels only,
and the glossary in docs/load-runs.md is generated from them.

Two sums hold on every run (`sums`): every planned message was acknowledged, failed or not sent;
every acknowledged message was stored, quarantined, dead-lettered, throttled or is unaccounted for.
Duplicate sends, resends, duplicates dropped, refused connections, throttled publishes and what
arrived without an acknowledgement are counted apart: they are not messages of either sum."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Count(StrEnum):
    """A count's key in the summary and in report.json."""

    PLANNED = "planned"
    PUBLISHES = "publishes"
    DUPLICATE_SENDS = "duplicate_sends"
    RESENDS = "resends"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    NOT_SENT = "not_sent"
    UNPLANNED = "unplanned"
    REFUSED_CONNECTIONS = "refused_connections"
    STORED = "stored"
    QUARANTINED = "quarantined"
    DEAD_LETTERED = "dead_lettered"
    THROTTLED = "throttled"
    UNACCOUNTED = "unaccounted"
    DUPLICATES_DROPPED = "duplicates_dropped"
    ARRIVED_UNACKNOWLEDGED = "arrived_unacknowledged"
    THROTTLED_PUBLISHES = "throttled_publishes"


@dataclass(frozen=True)
class Meaning:
    label: str  # how every report and the live line name it
    text: str  # what it counts, for the glossary


MEANINGS: dict[Count, Meaning] = {
    Count.PLANNED: Meaning(
        "planned",
        "Messages the fleet file, seed and duration call for: distinct (device, message id) pairs.",
    ),
    Count.PUBLISHES: Meaning(
        "publishes",
        "MQTT publishes the devices made, duplicate sends included. MQTT's own resend of an "
        "unacknowledged packet after a reconnect is the same publish, not a new one.",
    ),
    Count.DUPLICATE_SENDS: Meaning(
        "duplicate sends",
        "Publishes of a message id that was already published: the `duplicate` fault sends some "
        "messages twice on purpose. publishes = acknowledged + failed + duplicate sends.",
    ),
    Count.RESENDS: Meaning(
        "resends",
        "Publishes a device sent again because no PUBACK came within its ack timeout (a scenario's "
        "`ack_timeout_s`, or 1 s with `aws_quotas`), as AWS IoT's device SDKs do: the same publish, like "
        "MQTT's resend after a reconnect. Counted apart, in no sum.",
    ),
    Count.ACKNOWLEDGED: Meaning(
        "acknowledged",
        "Distinct messages the broker acknowledged (a PUBACK at QoS 1), however often each was sent. "
        "At QoS 0 nothing is acknowledged: the count is of messages written to the connection, and one "
        "lost after that is what QoS 0 allows.",
    ),
    Count.FAILED: Meaning(
        "failed",
        "Distinct messages published but never acknowledged: the device gave up on them (by cause: its "
        "queue was full, its connection dropped at QoS 0, or no PUBACK came before the run ended).",
    ),
    Count.NOT_SENT: Meaning(
        "not sent",
        "Planned messages that were never published: the run was stopped early (Ctrl-C) or the "
        "simulator ended before their time.",
    ),
    Count.UNPLANNED: Meaning(
        "unplanned",
        "Published message ids that no plan holds: 0 unless the simulator and the plan disagree "
        "(a check fails when it is not).",
    ),
    Count.REFUSED_CONNECTIONS: Meaning(
        "refused connections",
        "Connection attempts the broker refused or that failed (the device tries again): attempts, not "
        "messages; a message waits for its device's connection.",
    ),
    Count.STORED: Meaning(
        "stored",
        "Acknowledged messages with an item in DynamoDB.",
    ),
    Count.QUARANTINED: Meaning(
        "quarantined",
        "Acknowledged messages the processor rejected and kept in the quarantine bucket with the "
        "reason (and did not store).",
    ),
    Count.DEAD_LETTERED: Meaning(
        "dead-lettered",
        "Acknowledged messages the rule could not hand to the processor's queue, kept in the rule's "
        "dead-letter queue (neither stored nor quarantined).",
    ),
    Count.THROTTLED: Meaning(
        "throttled",
        "Acknowledged messages the quota gate dropped under an AWS IoT Core quota, as AWS drops a QoS 0 "
        "publish over a quota: refused, not lost (0 at QoS 1, where a throttled publish gets no PUBACK "
        "and the device sends it again).",
    ),
    Count.UNACCOUNTED: Meaning(
        "unaccounted",
        "Acknowledged messages found in no store: lost. The goal is 0.",
    ),
    Count.DUPLICATES_DROPPED: Meaning(
        "duplicates dropped",
        "Messages sent twice and stored once: the processor's idempotency dropped the second delivery. "
        "Counted apart, in no sum.",
    ),
    Count.ARRIVED_UNACKNOWLEDGED: Meaning(
        "arrived unacknowledged",
        "Failed messages that reached a store anyway (their PUBACK was lost with the connection): "
        "counted apart, in no sum; not lost.",
    ),
    Count.THROTTLED_PUBLISHES: Meaning(
        "throttled publishes",
        "Publishes the quota gate refused under an AWS IoT Core quota (`aws_quotas`): attempts, not "
        "messages; each device's are in the report's quota table. Counted apart, in no sum.",
    ),
}

# Each sum: a total and the counts it splits into, over distinct messages.
SUMS: tuple[tuple[Count, tuple[Count, ...]], ...] = (
    (Count.PUBLISHES, (Count.ACKNOWLEDGED, Count.FAILED, Count.DUPLICATE_SENDS)),
    (Count.PLANNED, (Count.ACKNOWLEDGED, Count.FAILED, Count.NOT_SENT)),
    (Count.ACKNOWLEDGED, (Count.STORED, Count.QUARANTINED, Count.DEAD_LETTERED, Count.THROTTLED, Count.UNACCOUNTED)),
)


# The same sums at QoS 0, where the broker acknowledges nothing.
QOS0_FORM = (
    "At QoS 0 the sums are the same, with acknowledged counting the messages written to the connection; "
    "unaccounted is then what QoS 0 allows to be lost, and a scenario says how much with max_lost."
)


def label(count: Count) -> str:
    return MEANINGS[count].label


def equation(total: Count, parts: tuple[Count, ...]) -> str:
    """A sum as the reports write it; the planned one allows for unplanned ids, which a check refuses."""
    left = f"{label(total)} + {label(Count.UNPLANNED)}" if total is Count.PLANNED else label(total)
    return f"{left} = {' + '.join(label(p) for p in parts)}"


def sums(counts: Mapping[str, int]) -> dict[str, bool]:
    """Whether each sum holds for these counts, by its equation."""
    held = {}
    for total, parts in SUMS:
        left = counts[total] + (counts[Count.UNPLANNED] if total is Count.PLANNED else 0)
        held[equation(total, parts)] = left == sum(counts[p] for p in parts)
    return held


def sums_text(held: Mapping[str, bool], qos: int) -> str:
    """A report's sums in a sentence: each holds, or which do not; at QoS 0, its form."""
    if all(held.values()):
        text = "; ".join(held) + " (each holds)"
    else:
        text = "the counts do NOT add up: " + "; ".join(f"{eq}: {'yes' if ok else 'NO'}" for eq, ok in held.items())
    return f"at QoS {qos}; {text}" + (f". {QOS0_FORM}" if qos == 0 else "")


def labelled(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """A report's counts under their labels, in the glossary's order (what every report shows)."""
    return [(MEANINGS[count].label, counts[count]) for count in Count if count in counts]


def glossary_markdown() -> str:
    """The glossary in docs/load-runs.md: every count, then the sums."""
    rows = [f"| {m.label} | `{count.value}` | {m.text} |" for count, m in MEANINGS.items()]
    return "\n".join(
        [
            "| count | key in report.json | what it counts |",
            "|---|---|---|",
            *rows,
            "",
            "On every run, each of these holds (a report's check says so):",
            "",
            *(f"- {equation(total, parts)}" for total, parts in SUMS),
            "",
            QOS0_FORM,
            "",
        ]
    )
