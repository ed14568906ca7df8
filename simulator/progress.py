"""What a run's worker processes report while they run, and the fleet's live line from it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from toolkit.counts import Count, label
from toolkit.histogram import LatencyHistogram


class WorkerProgress(NamedTuple):
    """What one worker reports four times a second while it runs (its last report says 0 connected);
    the counts are toolkit/counts.py's, so far."""

    worker: int
    connected: int
    publishes: int
    acknowledged: int  # distinct messages
    failed: int  # distinct messages given up on, not acknowledged
    refused_connections: int
    reconnects: int
    ack_latency: LatencyHistogram  # due time to the broker's acknowledgement
    duplicate_sends: int = 0

    @property
    def in_flight(self) -> int:
        """Published and neither acknowledged nor failed yet."""
        return max(self.publishes - self.duplicate_sends - self.acknowledged - self.failed, 0)

    @staticmethod
    def total(latest: Iterable[WorkerProgress]) -> WorkerProgress:
        """The fleet's figures: the sum of each worker's latest report."""
        rows = list(latest)
        fields = ("connected", "publishes", "acknowledged", "failed", "refused_connections", "reconnects")
        connected, publishes, acknowledged, failed, refused, reconnects = (
            sum(getattr(r, f) for r in rows) for f in fields
        )
        merged = LatencyHistogram.merged(r.ack_latency for r in rows)
        duplicates = sum(r.duplicate_sends for r in rows)
        return WorkerProgress(-1, connected, publishes, acknowledged, failed, refused, reconnects, merged, duplicates)

    def line(self, elapsed_s: float) -> str:
        """The live line: the counts so far, by their labels."""
        return (
            f"{self.connected:,} connected  {self.publishes:,} {label(Count.PUBLISHES)}  "
            f"{self.publishes / max(elapsed_s, 1e-3):,.0f} msg/s  {self.acknowledged:,} {label(Count.ACKNOWLEDGED)}  "
            f"{self.failed:,} {label(Count.FAILED)}  {self.refused_connections:,} {label(Count.REFUSED_CONNECTIONS)}"
        )
