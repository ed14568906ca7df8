"""The benchmark's rate search finds the highest good rate from a low start on any machine, and its
ceiling arithmetic is what the README says it is."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import psutil
import pytest

from testbed.bench.ceiling import Ceiling, CpuMeter
from testbed.bench.ingress_rate import MAX_STEPS, PRECISION, bridge_over_raw, good, next_rate, search_rates


def _search(capacity: float, start: float = 100) -> list[float]:
    """The rates the search tries against a pipeline that keeps up exactly to `capacity`."""
    tried: list[tuple[float, bool]] = []
    while (rate := next_rate(tried, start)) is not None:
        tried.append((rate, rate <= capacity))
    return [rate for rate, _ in tried]


@pytest.mark.parametrize("capacity", [130, 855, 2_487, 3_300, 9_000])
def test_the_search_brackets_the_capacity_of_a_fast_or_a_slow_machine(capacity: float) -> None:
    rates = _search(capacity)
    assert rates[:2] == [100, 200]
    best = max(r for r in rates if r <= capacity)
    above = min(r for r in rates if r > capacity)
    assert len(rates) <= MAX_STEPS
    # narrow enough, or out of steps
    assert (above - best) / best <= PRECISION or len(rates) == MAX_STEPS
    assert best >= capacity / 2


def test_a_machine_too_slow_for_the_first_step_still_gets_a_rate() -> None:
    """855 msg/s was reported as no rate at all when the first step was 1,000: start at 1,000, capacity 300."""
    rates = _search(300, start=1_000)
    assert rates[0] == 1_000
    assert max(r for r in rates if r <= 300) >= 125


def test_a_pipeline_that_keeps_up_with_nothing_ends_the_search() -> None:
    rates = _search(0)
    assert rates == [100, 50, 25, 12.5]


def _row(**changes: float) -> dict[str, float]:
    return {"lost": 0, "p99_ms": 500.0, "stored_msg_s": 990.0, "offered_msg_s": 1_000.0, **changes}


def test_a_good_step_has_no_loss_a_bounded_p99_and_keeps_up() -> None:
    assert good(_row())
    assert not good(_row(lost=1))
    assert not good(_row(p99_ms=2_500.0))
    # no loss and a fine p99 over the messages it stored, but it stored half of what was offered
    assert not good(_row(stored_msg_s=500.0))


def test_the_ceiling_adds_the_emulator_time_of_a_write_and_of_an_invoke_share() -> None:
    ceiling = Ceiling(dynamodb_items_s=4_000, invoke_msg_s=4_000)
    assert ceiling.per_message_us == 500.0
    assert ceiling.msg_s == 2_000.0
    assert ceiling.as_dict() == {
        "dynamodb_items_s": 4_000,
        "invoke_msg_s": 4_000,
        "combined_msg_s": 2_000,
        "emulator_us_per_msg": 500.0,
    }


def test_the_cpu_meter_reads_a_process_and_its_children() -> None:
    meter = CpuMeter({"emulator": os.getpid()})
    before = meter.sample()
    sum(i * i for i in range(300_000))
    after = meter.sample()
    assert set(after) == {"emulator", "lambda workers"}
    assert after["emulator"] > before["emulator"]
    assert after["emulator"] == pytest.approx(sum(psutil.Process().cpu_times()[:2]), abs=0.05)


def test_a_worker_that_ends_between_samples_keeps_the_cpu_it_had_spent() -> None:
    """The emulator retires idle Lambda workers: their CPU must not vanish from the step."""
    meter = CpuMeter({"emulator": os.getpid()})
    before = meter.sample()
    worker = subprocess.Popen([sys.executable, "-c", "import time; t = time.time()\nwhile time.time() - t < 0.4: pass"])
    time.sleep(0.3)
    during = meter.sample()
    worker.wait()
    after = meter.sample()
    assert during["lambda workers"] > before["lambda workers"] + 0.1
    assert after["lambda workers"] >= during["lambda workers"], "a retired worker's time stays counted"


def test_a_worker_started_during_a_step_is_counted_as_a_cold_start() -> None:
    meter = CpuMeter({"emulator": os.getpid()})
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    try:
        time.sleep(0.2)
        meter.sample()
        known = meter.workers()
        new = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
        try:
            meter.sample()
            assert meter.started_after(known) == 1, "the worker there before the step is not one"
            assert meter.started_after(meter.workers()) == 0
        finally:
            new.kill()
            new.wait()
    finally:
        old.kill()
        old.wait()


def test_a_cold_first_step_is_measured_again_and_the_search_still_climbs() -> None:
    """The first step (100 msg/s) met a cold Lambda: p99 2,073 ms. The search took it as the
    pipeline's limit and only went down (50, 75, 88); measured again, warm, it passes and the search
    climbs to the capacity, 855 msg/s here."""
    capacity, calls = 855, []

    def step(rate: float) -> dict[str, float]:
        calls.append(rate)
        cold = len(calls) == 1
        keeps_up = rate <= capacity
        return {
            "lost": 0,
            "p99_ms": 2_073.0 if cold or not keeps_up else 300.0,
            "stored_msg_s": rate if keeps_up else capacity,
            "offered_msg_s": rate,
        }

    rows = search_rates(step, 100)
    assert calls[:3] == [100, 100, 200], "the cold step is measured once more, then the search goes up"
    assert rows[1]["repeat"] is True
    best = max(r["offered_msg_s"] for r in rows if good(r))
    assert capacity / 1.3 <= best <= capacity


def test_a_step_that_fails_twice_counts_as_failed() -> None:
    rows = search_rates(lambda rate: _row(offered_msg_s=rate, stored_msg_s=rate, lost=1 if rate >= 400 else 0), 100)
    tried = [r["offered_msg_s"] for r in rows]
    assert tried.count(400) == 2 and all(tried.count(r) <= 2 for r in tried)
    assert max(r["offered_msg_s"] for r in rows if good(r)) < 400


@pytest.mark.parametrize(
    ("top", "raw", "ratio"),
    [
        ({"cpu_us_per_msg": {"rule bridge": 95.0}}, {"cpu_us_per_msg": 38.0}, 2.5),
        (None, {"cpu_us_per_msg": 38.0}, None),  # no good step: nothing to set beside the yardstick
        ({"cpu_us_per_msg": {}}, {"cpu_us_per_msg": 38.0}, None),  # no bridge process (another ingress)
        ({"cpu_us_per_msg": {"rule bridge": 95.0}}, {"cpu_us_per_msg": 0.0}, None),  # a receive that cost nothing
    ],
)
def test_the_bridge_is_set_beside_one_raw_subscriber_only_where_both_were_measured(
    top: dict[str, Any] | None, raw: dict[str, Any], ratio: float | None
) -> None:
    assert bridge_over_raw(top, raw) == ratio
