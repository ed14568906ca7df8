"""The writers' retry policy for partial failures: how many attempts, and the backoff between them."""

from __future__ import annotations

import random

from telemetry.backoff import backoff_s

BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0
MAX_ATTEMPTS = 6


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based)."""
    return backoff_s(attempt - 1, BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, rng)
