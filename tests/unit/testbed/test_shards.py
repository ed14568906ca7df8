"""What a sharded run's merge refuses or accounts for, read from files that shards on other machines
wrote: a missing, truncated, foreign or hand-made summary is a shard unaccounted, never merged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simulator.shard import Shard
from testbed.runs.shards import MissingShard, ShardAccount, ShardsError, _manifest, _summary, prepare


def _write(path: Path, document: Any) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


SHARD = Shard(1, 3)
GOOD = {
    "shard": "1/3",
    "run_tag": "ab12",
    "per_device": {},
    "published": 0,
    "sent_per_s": {},
    "lateness_s": [],
    "ack_latency_s": [],
    "failed_by_cause": {},
}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (None, "no shard-1.json: the shard did not finish"),
        ('{"shard": "1/3", "run_tag": "ab', "not readable JSON (JSONDecodeError): a shard that died writing it?"),
        ("[" * 100_000, "not readable JSON (RecursionError)"),
        ({**GOOD, "shard": "2/3"}, "is not shard 1/3 of run ab12 (it says ('2/3', 'ab12'))"),
        ({**GOOD, "run_tag": "zz99"}, "is not shard 1/3 of run ab12"),
        (["not", "a", "summary"], "is not shard 1/3 of run ab12 (it says list)"),
        ({k: v for k, v in GOOD.items() if k != "lateness_s"}, "lacks what a merge needs"),
        ({**GOOD, "per_device": []}, "lacks what a merge needs"),
    ],
)
def test_a_summary_that_cannot_be_merged_says_why(tmp_path: Path, document: Any, reason: str) -> None:
    path = tmp_path / "shard-1.json"
    if document is not None:
        _write(path, document)
    summary, why = _summary(path, SHARD, "ab12")
    assert summary is None and reason in why


def test_a_good_summary_is_returned_whole(tmp_path: Path) -> None:
    assert _summary(_write(tmp_path / "shard-1.json", GOOD), SHARD, "ab12") == (GOOD, "")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (None, "holds no shards.json"),
        ("{", "is not readable JSON"),
        ({"scenario": "smoke", "run_tag": "ab12", "count": "3", "started": 1.0, "counters_before": {}}, "count"),
        ([1, 2], "is not a shard manifest"),
    ],
)
def test_a_run_folder_without_a_usable_manifest_is_refused(tmp_path: Path, document: Any, problem: str) -> None:
    if document is not None:
        _write(tmp_path / "shards.json", document)
    with pytest.raises(ShardsError, match=problem):
        _manifest(tmp_path)


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
