"""A load step the pipeline fell behind on is waited out: what it stores afterwards is late, what it
never stores once idle is lost, and a backlog that does not clear is neither."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest

from processor.store import StoredReading
from testbed.bench import loadrun
from testbed.bench.ingress_rate import good
from testbed.lifecycle.stack import Stack
from testbed.stores import Stores


def reading(msg_id: int) -> StoredReading:
    return StoredReading("dev", f"{msg_id:013d}", msg_id, 0, "environmental", "1", {}, stored_at_ms=1, expires_at_s=1)


@dataclass
class Pipeline:
    """Each poll stores the next of `stored_per_poll` counts; queued messages per poll, the last repeating."""

    stored_per_poll: list[int]
    queued_per_poll: list[int]
    polls: int = 0

    def __post_init__(self) -> None:
        self.backend = self

    def readings(self, device_id: str) -> list[StoredReading]:
        count = self.stored_per_poll[min(self.polls, len(self.stored_per_poll) - 1)]
        self.polls += 1
        return [reading(n) for n in range(count)]

    def ingress_counters(self) -> dict[str, Any]:
        return {"queued": self.queued_per_poll[min(self.polls - 1, len(self.queued_per_poll) - 1)]}

    def ingest_queue_depth(self) -> int:
        return 0


def wait(pipeline: Pipeline, expected: int) -> tuple[list[StoredReading], bool]:
    return loadrun.wait_out_backlog(cast(Stack, pipeline), cast(Stores, pipeline), ["dev"], 0, expected)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadrun, "BACKLOG_POLL_S", 0.0)


def test_a_backlog_that_clears_stores_every_message_late() -> None:
    items, settled = wait(Pipeline([70, 80, 90, 100], [30, 20, 10, 0]), expected=100)
    assert (len(items), settled) == (100, True)


def test_a_pipeline_gone_idle_without_some_messages_has_lost_them_and_is_not_waited_on() -> None:
    pipeline = Pipeline([70, 95], [5, 0])
    items, settled = wait(pipeline, expected=100)
    assert (len(items), settled) == (95, True)
    assert pipeline.polls == 2 + loadrun.IDLE_POLLS, "idle for IDLE_POLLS polls in a row, then done"


def test_a_batch_in_flight_is_in_no_queue_but_still_stores() -> None:
    """Queues empty while an invocation runs: a count that still moves keeps the wait going."""
    items, settled = wait(Pipeline([70, 71, 72, 73, 74, 75, 100], [0]), expected=100)
    assert (len(items), settled) == (100, True)


def test_a_backlog_that_does_not_clear_in_time_is_unsettled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadrun, "BACKLOG_TIMEOUT_S", 0.05)
    items, settled = wait(Pipeline([70], [30]), expected=100)
    assert (len(items), settled) == (70, False)


@pytest.mark.parametrize("field_name", ["lost", "late", "unsettled"])
def test_a_step_with_any_message_not_stored_in_time_is_not_good(field_name: str) -> None:
    row = {"lost": 0, "late": 0, "unsettled": 0, "p99_ms": 500.0, "stored_msg_s": 990.0, "offered_msg_s": 1_000.0}
    assert good(row)
    assert not good({**row, field_name: 1})
