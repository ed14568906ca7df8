"""Latency kept as counts per bucket, the shape a Prometheus histogram exposes: one increment per
message, summed across worker processes, and sent between them as a plain tuple."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

# Upper bounds (s), from a loopback publish acknowledgement to a redelivery after a fault.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class LatencyHistogram:
    """Counts per bucket (the last: above every bound) and the sum of what was observed."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    sum_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.sum_s += seconds

    def copy(self) -> LatencyHistogram:
        return LatencyHistogram(list(self.counts), self.sum_s)

    @staticmethod
    def merged(parts: Iterable[LatencyHistogram]) -> LatencyHistogram:
        total = LatencyHistogram()
        for part in parts:
            total.counts = [a + b for a, b in zip(total.counts, part.counts, strict=True)]
            total.sum_s += part.sum_s
        return total

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, observations at or below it) per bound, then +Inf: Prometheus's bucket series."""
        running, out = 0, []
        for bound, count in zip((*map(str, LATENCY_BUCKETS_S), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out
