"""The one backoff formula (telemetry/backoff.py) every retrying part uses."""

from __future__ import annotations

import random

from telemetry.backoff import backoff_s


def test_the_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    rng = random.Random(1)
    for attempt, ceiling in ((0, 0.1), (1, 0.2), (3, 0.8), (6, 5.0), (40, 5.0)):
        draws = [backoff_s(attempt, 0.1, 5.0, rng) for _ in range(400)]
        assert min(draws) >= 0 and max(draws) <= ceiling
        assert max(draws) > 0.9 * ceiling, "draws reach up to the ceiling: jitter, not a fixed delay"


def test_a_floor_keeps_every_wait_above_it_and_never_inverts_the_range() -> None:
    rng = random.Random(2)
    assert min(backoff_s(4, 0.5, 10.0, rng, floor_s=0.5) for _ in range(400)) >= 0.5
    assert backoff_s(0, 0.1, 5.0, rng, floor_s=1.0) == 0.1, "a floor above the ceiling waits the ceiling"


def test_no_outage_is_long_enough_to_overflow_it() -> None:
    assert 0 <= backoff_s(10**6, 0.1, 5.0) <= 5.0
    assert 0 <= backoff_s(-3, 0.1, 5.0) <= 0.1
