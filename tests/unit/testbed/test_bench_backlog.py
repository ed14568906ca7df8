"""A load step the pipeline fell behind on is waited out: what it stores afterwards is late, what it
never stores once idle is lost, and a backlog that does not clear is neither."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest

from processor.store import StoredReading
from testbed.bench import loadrun
from testbed.bench.ingress_rate import good
from testbed.lifecycle.stack import Stack
from testbed.stores import Stores


@dataclass
class Pipeline:
    """Poll n stores the first `stored_per_poll[n]` messages, with `queued_per_poll[n]` in its queues
    (the last figure of each repeats)."""

    stored_per_poll: list[int]
    queued_per_poll: list[int]
    polls: int = 0

    def __post_init__(self) -> None:
        self.backend = self

    def readings(self, device_id: str) -> list[StoredReading]:
        count = self.stored_per_poll[min(self.polls, len(self.stored_per_poll) - 1)]
        self.polls += 1
        return [StoredReading(device_id, f"{n:013d}", n, 0, "environmental", "1", {}, 1, 1) for n in range(count)]

    def ingress_counters(self) -> dict[str, Any]:
        return {"queued": self.queued_per_poll[min(self.polls - 1, len(self.queued_per_poll) - 1)]}

    def ingest_queue_depth(self) -> int:
        return 0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The wait's time, moved only by its own sleeps."""
    fake = SimpleNamespace(now=0.0)
    fake.time = lambda: fake.now
    fake.sleep = lambda seconds: setattr(fake, "now", fake.now + seconds)
    monkeypatch.setattr(loadrun, "time", fake)
    return fake


def wait(pipeline: Pipeline, missing: range) -> tuple[int, bool]:
    items, settled = loadrun.wait_out_backlog(
        cast(Stack, pipeline), cast(Stores, pipeline), ["dev"], 0, {("dev", n) for n in missing}
    )
    return len(items), settled


def test_a_backlog_that_clears_stores_every_message_late(clock: SimpleNamespace) -> None:
    assert wait(Pipeline([70, 80, 90, 100], [30, 20, 10, 0]), missing=range(70, 100)) == (100, True)
    assert clock.now == 3 * loadrun.BACKLOG_POLL_S, "done as soon as the queues are empty and all are stored"


def test_a_pipeline_gone_idle_without_some_messages_has_lost_them(clock: SimpleNamespace) -> None:
    assert wait(Pipeline([70, 95], [5, 0]), missing=range(70, 100)) == (95, True)
    assert loadrun.IDLE_S <= clock.now <= loadrun.IDLE_S + 3 * loadrun.BACKLOG_POLL_S


def test_a_batch_in_flight_is_in_no_queue_but_still_stores(clock: SimpleNamespace) -> None:
    """Queues empty while an invocation runs: a count that still moves keeps the wait going."""
    stored = [70 + n // 10 for n in range(int(loadrun.IDLE_S))] + [100]  # one more every 10 polls, then the rest
    assert wait(Pipeline(stored, [0]), missing=range(70, 100)) == (100, True)


def test_a_count_made_up_by_other_messages_does_not_end_the_wait(clock: SimpleNamespace) -> None:
    """Messages stored but never acknowledged can make up the count while an acknowledged one is
    still missing: only the missing ones themselves end the wait early."""
    assert wait(Pipeline([100], [0]), missing=range(100, 101)) == (100, True)
    assert clock.now >= loadrun.IDLE_S


def test_a_backlog_that_does_not_clear_in_time_is_unsettled(clock: SimpleNamespace) -> None:
    assert wait(Pipeline([70], [30]), missing=range(70, 100)) == (70, False)
    assert clock.now >= loadrun.BACKLOG_TIMEOUT_S


@pytest.mark.parametrize("field_name", ["lost", "late", "unsettled"])
def test_a_step_with_any_message_not_stored_in_time_is_not_good(field_name: str) -> None:
    row = {"lost": 0, "late": 0, "unsettled": 0, "p99_ms": 500.0, "stored_msg_s": 990.0, "offered_msg_s": 1_000.0}
    assert good(row)
    assert not good({**row, field_name: 1})
