"""A run summary as a shard seals and a merge folds it, whatever the shard managed to send."""

from __future__ import annotations

import pytest

from simulator.devices import Emitted
from simulator.fleet import load_fleet
from simulator.integrity import seal, verified
from simulator.run import dry_run
from simulator.run_config import RunConfig
from simulator.summary import Recorder, RunSummary
from testbed.paths import ROOT
from testbed.runs.scenario import load_scenario


def test_a_shard_that_sent_nothing_still_seals_and_merges_its_summary() -> None:
    """Its first and last send were infinities, which JSON (and so the seal) refuses: the shard
    wrote no summary and the merge said it did not finish, instead of naming its failed publishes."""
    nothing = Recorder().to_dict(raw=True)
    assert "first_send" not in nothing and "last_send" not in nothing
    sealed = seal(dict(nothing), b"k" * 32)
    assert verified(sealed, b"k" * 32)
    merged = Recorder()
    merged.merge(nothing)
    assert merged.to_dict()["send_span_s"] == 0.0


def emitted(msg_id: int, *faults: str, device: str = "d1") -> Emitted:
    return Emitted(device, msg_id, b"{}", 1.0, faults)


def counts_of(summary: RunSummary) -> tuple[int, int, int, int]:
    return summary["publishes"], summary["duplicate_sends"], summary["acknowledged"], summary["failed"]


def test_a_message_sent_twice_is_one_message_whichever_of_its_sends_succeeds() -> None:
    recorder = Recorder()
    first, copy = emitted(1), emitted(1, "duplicate")
    for e in (first, copy, emitted(2), emitted(3)):
        recorder.generated(e)
    recorder.failed(first, "disconnected")
    assert (recorder.acknowledged, recorder.failed_messages) == (0, 1)
    recorder.acked(copy, 2.0)  # the copy got through: the message is acknowledged, not failed
    recorder.acked(emitted(2), 2.0)
    recorder.failed(emitted(2), "unacked_at_end")  # acknowledged before: stays acknowledged
    recorder.failed(emitted(3), "queue_full")
    recorder.failed(emitted(3), "queue_full")
    assert (recorder.acknowledged, recorder.failed_messages) == (2, 1)
    summary = recorder.to_dict()
    assert counts_of(summary) == (4, 1, 2, 1)
    assert summary["publishes"] == summary["acknowledged"] + summary["failed"] + summary["duplicate_sends"]
    assert summary["failed_by_cause"] == {"disconnected": 1, "queue_full": 2, "unacked_at_end": 1}, "per publish"


def test_workers_merged_count_what_one_recorder_would() -> None:
    one, first, second = Recorder(), Recorder(), Recorder()
    sends = [(emitted(1), True), (emitted(1, "duplicate"), False), (emitted(2), False), (emitted(9, device="d2"), True)]
    for index, (e, ok) in enumerate(sends):
        for recorder in (one, first if index % 2 == 0 else second):
            recorder.generated(e)
            recorder.acked(e, 2.0) if ok else recorder.failed(e, "disconnected")
    merged = Recorder()
    merged.merge(first.to_dict(raw=True))
    merged.merge(second.to_dict(raw=True))
    assert counts_of(merged.to_dict()) == counts_of(one.to_dict()) == (4, 1, 2, 1)
    assert (merged.acknowledged, merged.failed_messages) == (2, 1), "the live counts follow the merge"


def test_a_pregenerated_publish_is_counted_when_it_is_sent_not_when_it_is_made() -> None:
    recorder = Recorder()
    made = [emitted(n) for n in range(1, 6)]
    for e in made:
        recorder.noted(e)
    recorder.published(made[0])
    summary = recorder.to_dict()
    assert summary["publishes"] == 1 and summary["payload_sizes"] == {"2": 1}, "four were never sent"


@pytest.mark.parametrize("scenario", sorted(p.stem for p in (ROOT / "testbed" / "runs" / "scenarios").glob("*.yaml")))
def test_every_shipped_scenarios_dry_run_adds_up(scenario: str) -> None:
    """The simulator's own bookkeeping on every scenario's fleet (a dry run acknowledges every send)."""
    plan = load_scenario(scenario)
    config = RunConfig(fleet=load_fleet(plan.fleet), seed=plan.seed, key=b"k", duration_s=20, profile=plan.profile)
    summary = dry_run(config, None)
    sent = sum(len(r["acked"]) + len(r["failed"]) for r in summary["per_device"].values())
    assert summary["publishes"] == sent == sum(r["publishes"] for r in summary["per_device"].values())
    assert summary["publishes"] == summary["acknowledged"] + summary["failed"] + summary["duplicate_sends"]
    tagged = sum(tags.count("duplicate") for r in summary["per_device"].values() for tags in r["faults"].values())
    assert summary["duplicate_sends"] == tagged
