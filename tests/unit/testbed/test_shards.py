"""What a sharded run's merge refuses or accounts for, read from files that shards on other machines
wrote: a missing, truncated, foreign or hand-made summary is a shard unaccounted, never merged."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from simulator.integrity import seal
from simulator.shard import Shard
from testbed.runs.shard_account import MissingShard, ShardAccount
from testbed.runs.shards import (
    ShardsError,
    _manifest,
    _plan_problem,
    _summary,
    prepare,
    summary_problem,
)

KEY = bytes(range(32))


def _write(path: Path, document: Any) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


SHARD = Shard(1, 3)
MANIFEST = seal({"scenario": "smoke", "run_tag": "ab12", "count": 3, "started": 1.0, "counters_before": {}}, KEY)
GOOD = seal(
    {
        "shard": "1/3",
        "run_tag": "ab12",
        "per_device": {},
        "publishes": 0,
        "duplicate_sends": 0,
        "sent_per_s": {},
        "lateness_s": [],
        "ack_latency_s": [],
        "failed_by_cause": {},
    },
    KEY,
)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (None, "no shard-1.json: the shard did not finish"),
        ('{"shard": "1/3", "run_tag": "ab', "not readable JSON (JSONDecodeError): a shard that died writing it?"),
        ("[" * 100_000, "not readable JSON (RecursionError)"),
        ({**GOOD, "shard": "2/3"}, "is not shard 1/3 of run ab12 (it says ('2/3', 'ab12'))"),
        ({**GOOD, "run_tag": "zz99"}, "is not shard 1/3 of run ab12"),
        (["not", "a", "summary"], "is not shard 1/3 of run ab12 (it says list)"),
        (seal({k: v for k, v in GOOD.items() if k != "lateness_s"}, KEY), "lacks what a merge needs"),
        (seal({**GOOD, "per_device": []}, KEY), "lacks what a merge needs"),
        ({**GOOD, "publishes": 900}, "is not sealed with this run's key (forged, or run without --run-key-file)"),
        (seal(GOOD, b"another run's key" * 2), "is not sealed with this run's key"),
        ({k: v for k, v in GOOD.items() if k != "mac"}, "is not sealed with this run's key"),
        ({**GOOD, "mac": "é" * 64}, "is not sealed with this run's key"),  # compare_digest raised TypeError
        ({**GOOD, "mac": 7}, "is not sealed with this run's key"),
    ],
)
def test_a_summary_that_cannot_be_merged_says_why(tmp_path: Path, document: Any, reason: str) -> None:
    path = tmp_path / "shard-1.json"
    if document is not None:
        _write(path, document)
    summary, why = _summary(path, SHARD, "ab12", KEY)
    assert summary is None and reason in why


def test_a_good_summary_is_returned_whole(tmp_path: Path) -> None:
    assert _summary(_write(tmp_path / "shard-1.json", GOOD), SHARD, "ab12", KEY) == (GOOD, "")


@pytest.mark.parametrize("kind", ["fifo", "symlink to /dev/zero"])
def test_a_summary_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "shard-1.json"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block until a writer came
    else:
        path.symlink_to("/dev/zero")  # reading it would never end
    summary, why = _summary(path, SHARD, "ab12", KEY)
    assert summary is None and why == f"{path} is not a regular file"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (None, "holds no shards.json"),
        ("{", "is not readable JSON"),
        ({"scenario": "smoke", "run_tag": "ab12", "count": "3", "started": 1.0, "counters_before": {}}, "count"),
        ([1, 2], "is not a shard manifest"),
        (
            {**MANIFEST, "scenario": "steady"},
            "is not sealed with this run's key: it was changed since `shards` wrote it",
        ),
    ],
)
def test_a_run_folder_without_a_usable_manifest_is_refused(tmp_path: Path, document: Any, problem: str) -> None:
    if document is not None:
        _write(tmp_path / "shards.json", document)
    with pytest.raises(ShardsError, match=problem):
        _manifest(tmp_path, KEY)
    _write(tmp_path / "shards.json", MANIFEST)
    assert _manifest(tmp_path, KEY) == MANIFEST


def test_what_a_missing_shard_stored_anyway_is_counted_once_per_message() -> None:
    account = ShardAccount(3, merged=["0/3", "2/3"], missing=[MissingShard(SHARD, "killed", ["d1", "d4"], 40)])
    account.count_stored_anyway([("d1", 1), ("d1", 1), ("d4", 2), ("d2", 1)])
    assert account.as_dict()["missing"] == [
        {"shard": "1/3", "reason": "killed", "devices": 2, "planned_messages": 40, "stored_anyway": 2}
    ]


@pytest.mark.parametrize(
    ("scenario", "count", "problem"), [("chaos", 3, "injects faults"), ("smoke", 10_000, "holds no device")]
)
def test_a_run_that_cannot_be_sharded_is_refused_before_the_stack_is_touched(
    scenario: str, count: int, problem: str
) -> None:
    with pytest.raises(ShardsError, match=problem):
        prepare(None, scenario, count)  # type: ignore[arg-type]


DEVICES = {"d1", "d2"}
RECORD = {"publishes": 2, "acked": [1, 1], "acked_due": [1.0, 1.0], "failed": [], "faults": {"1": ["duplicate"]}}
MERGEABLE = {
    **GOOD,
    "publishes": 2,
    "duplicate_sends": 1,
    "reconnects": 0,
    "refused_connections": 0,
    "first_send": 1.0,
    "last_send": 2.0,
    "per_device": {"d1": RECORD},
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"publishes": -5}, "publishes is not a count"),
        ({"publishes": True}, "publishes is not a count"),
        ({"ack_latency_s": "abc"}, "ack_latency_s is not a list of finite numbers"),
        ({"lateness_s": ["x"]}, "lateness_s is not a list of finite numbers"),
        ({"lateness_s": [float("nan")]}, "lateness_s is not a list of finite numbers"),
        ({"sent_per_s": ["1"]}, "sent_per_s is not counts by key"),
        ({"sent_per_s": {"9" * 100_000: 1}}, "sent_per_s is not counts by key"),
        ({"payload_sizes": {"big": 1}}, "payload_sizes is not counts by key"),
        ({"reconnects": None}, "reconnects is not a count"),
        ({"first_send": float("inf")}, "first_send/last_send are not times"),
        ({"per_device": {"d1": {**RECORD, "faults": {"one": ["duplicate"]}}}}, "faults are not tags"),
        # a tag that is no fault of the simulator's crashed the reconciliation after the merge
        ({"per_device": {"d1": {**RECORD, "faults": {"1": ["bogus"]}}}}, "faults are not tags"),
        ({"lateness_s": [0.1], "first_send": None}, "first_send/last_send are not times"),
        ({"failed_by_cause": {"x": -1}}, "failed_by_cause is not counts by key"),
        ({"first_send": None}, "first_send/last_send are not times"),
        ({"per_device": {"d9": RECORD}}, "device 'd9' is not one of this shard's"),
        ({"per_device": {"d1": {**RECORD, "acked": [[1]], "acked_due": [1.0]}}}, "acked/acked_due"),
        ({"per_device": {"d1": {**RECORD, "acked": "12", "acked_due": "12"}}}, "acked/acked_due"),
        ({"per_device": {"d1": {**RECORD, "acked_due": [1.0]}}}, "acked/acked_due"),
        ({"per_device": {"d1": {**RECORD, "failed": ["1"]}}}, "failed is not message ids"),
        ({"per_device": {"d1": {**RECORD, "faults": ["x"]}}}, "faults are not tags"),
        ({"per_device": {"d1": {**RECORD, "publishes": None}}}, "no count of what it published"),
        # sealed and well-formed, but its counts do not add up: named here, not a failed sum after the merge
        ({"publishes": 3}, "publishes is not the sum of its devices' publishes"),
        ({"duplicate_sends": 0}, "duplicate_sends 0 is not the 1 sends its faults tag as duplicates"),
        ({"duplicate_sends": -1}, "duplicate_sends is not a count"),
    ],
)
def test_a_summary_that_would_crash_or_inflate_a_merge_is_refused(change: dict[str, Any], problem: str) -> None:
    assert summary_problem(MERGEABLE, DEVICES) is None, "a duplicate ack (the duplicate fault) is legitimate"
    assert problem in (summary_problem({**MERGEABLE, **change}, DEVICES) or "")


def test_a_summary_missing_a_count_the_merge_adds_is_refused() -> None:
    """It passed the old checks and crashed the merge with a KeyError after the alerts were drained."""
    without = {k: v for k, v in MERGEABLE.items() if k != "reconnects"}
    assert summary_problem(without, DEVICES) == "reconnects is not a count"


HEADER = {
    "seed": 1,
    "qos": 1,
    "duration_s": 10.0,
    "profile": {"kind": "constant"},
    "fleet_sha256": "ab",
    "signed": True,
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"seed": 2}, "it ran another plan: seed 2 (planned 1)"),
        ({"duration_s": float("nan")}, "it ran another plan: duration_s nan (planned 10.0)"),
        ({"fleet_sha256": "cd"}, "it ran another plan: fleet_sha256 'cd' (planned 'ab')"),
        ({"signed": False}, "it ran another plan: signed False (planned True)"),
        ({"per_device": {}}, "it published 0 of 2 planned messages (2 never published, 0 not in the plan)"),
        (
            {"per_device": {"d1": {**RECORD, "acked": [1, 2, 7], "acked_due": [1.0, 1.0, 1.0]}}},
            "it published 2 of 2 planned messages (0 never published, 1 not in the plan)",
        ),
    ],
)
def test_a_shard_that_departs_from_the_plan_is_not_merged(change: dict[str, Any], problem: str) -> None:
    """A worker started with --duration nan publishes nothing and exits 0; a forged summary names
    messages nobody planned: neither counts, whoever sealed it."""
    plan = {"d1": [1, 2]}
    ran = {**MERGEABLE, **HEADER, "per_device": {"d1": {**RECORD, "acked": [1, 2], "acked_due": [1.0, 1.0]}}}
    assert _plan_problem(ran, HEADER, plan) is None
    assert _plan_problem({**ran, **change}, HEADER, plan) == problem


def test_a_spike_tag_names_its_reading_and_passes() -> None:
    record = {**RECORD, "faults": {"1": ["spike:temperature", "malformed:invalid_json", "duplicate"]}}
    assert summary_problem({**MERGEABLE, "per_device": {"d1": record}}, DEVICES) is None
