"""Exponential backoff with jitter: the one formula every part that retries uses (the processor's
writers, the rule bridge, the simulator's reconnects), each with its own base and cap."""

from __future__ import annotations

import random

# Past this exponent the ceiling is the cap anyway; the limit keeps 2**n a float however long an
# outage lasts (2**1024 is not one).
MAX_EXPONENT = 32


def backoff_s(
    attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None, floor_s: float = 0.0
) -> float:
    """Seconds to wait before retry `attempt` (0 for the first): drawn uniformly between `floor_s`
    and min(cap_s, base_s * 2**attempt), so many clients retrying at once spread out."""
    ceiling = min(cap_s, base_s * 2 ** min(max(attempt, 0), MAX_EXPONENT))
    return (rng or random).uniform(min(floor_s, ceiling), ceiling)
