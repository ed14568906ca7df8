"""`make inspect`: what the deployed stack's stores hold now, read through `Stores` without consuming anything."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from processor.quarantine import QUARANTINE_PREFIX
from testbed.stores import RAW_PREFIX, Stores

REASON_IN_KEY = re.compile(r"reason=([^/]+)/")


@dataclass(frozen=True)
class Inventory:
    """Counts of each store; quarantine reasons with their counts and latest time (epoch s)."""

    telemetry_items: int
    ingest_queue: int
    dead_letter_queue: int
    alerts_tap_queue: int
    archive_objects: int
    archive_bytes: int
    quarantine_reasons: dict[str, tuple[int, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "telemetry_items": self.telemetry_items,
            "ingest_queue": self.ingest_queue,
            "dead_letter_queue": self.dead_letter_queue,
            "alerts_tap_queue": self.alerts_tap_queue,
            "archive_objects": self.archive_objects,
            "archive_bytes": self.archive_bytes,
            "quarantine_reasons": {r: {"count": c, "latest": t} for r, (c, t) in self.quarantine_reasons.items()},
        }


def inventory(stores: Stores) -> Inventory:
    """Counts only: queue depths are SQS's approximate attributes, objects are listed, not read."""
    archive = stores.object_listing(RAW_PREFIX)
    counts: Counter[str] = Counter()
    latest: dict[str, float] = {}
    for key, _, modified in stores.object_listing(QUARANTINE_PREFIX):
        match = REASON_IN_KEY.search(key)
        reason = match.group(1) if match else "(no reason in key)"
        counts[reason] += 1
        latest[reason] = max(latest.get(reason, 0.0), modified)
    outputs = stores.outputs
    return Inventory(
        telemetry_items=stores.telemetry_count(),
        ingest_queue=stores.queue_depth(outputs.ingest_queue_url),
        dead_letter_queue=stores.queue_depth(outputs.dlq_url),
        alerts_tap_queue=stores.queue_depth(outputs.need("alerts_tap_queue_url")),
        archive_objects=len(archive),
        archive_bytes=sum(size for _, size, _ in archive),
        quarantine_reasons={reason: (n, latest[reason]) for reason, n in counts.most_common()},
    )
