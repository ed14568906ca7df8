"""What a sharded run accounts for its shards: which summaries were merged, and what the missing
ones would have sent (the runner counts what they stored anyway). Below both the runner and
`shards`, so neither imports the other back."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from simulator.shard import Shard


@dataclass
class MissingShard:
    shard: Shard
    reason: str
    devices: list[str]
    # what the shard's dry run publishes: what went unaccounted
    planned: int
    stored_anyway: int = 0


@dataclass
class ShardAccount:
    """Which shards' summaries were merged, and what the missing ones would have sent."""

    count: int
    merged: list[str] = field(default_factory=list)
    missing: list[MissingShard] = field(default_factory=list)

    def count_stored_anyway(self, stored: list[tuple[str, int]]) -> None:
        """A shard killed mid-run leaves stored messages nobody's summary names: count them per shard."""
        per_device = Counter(device_id for device_id, _ in set(stored))
        for missing in self.missing:
            missing.stored_anyway = sum(per_device[device_id] for device_id in missing.devices)

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "merged": self.merged,
            "missing": [
                {
                    "shard": str(m.shard),
                    "reason": m.reason,
                    "devices": len(m.devices),
                    "planned_messages": m.planned,
                    "stored_anyway": m.stored_anyway,
                }
                for m in self.missing
            ],
        }
