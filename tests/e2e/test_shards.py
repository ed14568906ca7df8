"""A run in shards that know nothing of each other, merged and reconciled as one run; a shard killed
mid-run shows up as its shard missing, with its messages, and the run fails."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from testbed.lifecycle.stack import Stack
from testbed.paths import ROOT
from testbed.runs.shards import merge, prepare

pytestmark = pytest.mark.e2e
SCENARIO = """\
name: sharded
fleet: simulator/fleets/smoke.yaml
seed: 3
duration_s: 8
qos: 1
drain_timeout_s: 60
"""


def _start(stack: Stack, command: str) -> subprocess.Popen[bytes]:
    """The shard's command as `shards` printed it, run from the checkout with no venv activated."""
    words = shlex.split(command)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
        "PATH": "/usr/bin:/bin",
        "SIMULATOR_SIGNING_KEY": stack.signing_key().decode(),
    }
    return subprocess.Popen(words, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _prepare(stack: Stack, tmp_path: Path) -> tuple[Path, list[str]]:
    scenario = tmp_path / "sharded.yaml"
    scenario.write_text(SCENARIO)
    return prepare(stack, str(scenario), 3, reports_dir=tmp_path / "reports")


def test_three_shards_merge_into_one_run_that_reconciles(stack: Stack, tmp_path: Path) -> None:
    folder, commands = _prepare(stack, tmp_path)
    shards = [_start(stack, command) for command in commands]
    for shard in shards:
        assert shard.wait(timeout=120) == 0, shard.stderr.read() if shard.stderr else ""
    devices = [set(json.loads((folder / f"shard-{i}.json").read_text())["per_device"]) for i in range(3)]
    assert not (devices[0] & devices[1] or devices[1] & devices[2] or devices[0] & devices[2])
    run = merge(stack, folder, Console(quiet=True))
    report = json.loads((run.folder / "report.json").read_text())
    assert run.folder == folder
    assert report["passed"], report["measured"]
    assert report["shards"] == {"count": 3, "merged": ["0/3", "1/3", "2/3"], "missing": []}
    summaries = [json.loads((folder / f"shard-{i}.json").read_text()) for i in range(3)]
    # a message a device sent twice on purpose (a duplicate fault) is one message
    acked = sum(len(set(record["acked"])) for summary in summaries for record in summary["per_device"].values())
    assert report["counts"]["unaccounted"] == 0 and report["counts"]["acknowledged"] == acked


def test_a_shard_killed_mid_run_is_its_shard_missing_not_a_silent_shortfall(stack: Stack, tmp_path: Path) -> None:
    folder, commands = _prepare(stack, tmp_path)
    shards = [_start(stack, command) for command in commands]
    time.sleep(4)
    shards[1].send_signal(signal.SIGKILL)
    assert shards[1].wait(timeout=30) == -signal.SIGKILL
    for index in (0, 2):
        assert shards[index].wait(timeout=120) == 0
    run = merge(stack, folder, Console(quiet=True))
    report = json.loads((run.folder / "report.json").read_text())
    assert not report["passed"]
    (missing,) = report["shards"]["missing"]
    assert missing["shard"] == "1/3" and "no shard-1.json" in missing["reason"]
    # it published for about 4 of its 8 seconds: some of its messages were stored, none is in a summary
    assert 0 < missing["stored_anyway"] < missing["planned_messages"]
    assert report["counts"]["unaccounted"] == 0, "the merged shards lost nothing"
    assert "shard 1/3 missing" in report["measured"]["all 3 shards merged"]


def test_a_forged_or_short_shard_is_missing_and_the_run_fails(stack: Stack, tmp_path: Path) -> None:
    """Shard 0 runs for half its planned time and seals its summary with the run's key; shard 1 never
    runs, and someone writes its summary by hand, claiming every message, without the key; shard 2
    runs as planned. Before summaries were bound to the plan and the run, this run PASSED."""
    folder, commands = _prepare(stack, tmp_path)
    words = shlex.split(commands[0])
    words[words.index("--duration") + 1] = "4"
    short = _start(stack, shlex.join(words))
    whole = _start(stack, commands[2])
    assert short.wait(timeout=120) == 0 and whole.wait(timeout=120) == 0
    claimed = json.loads((folder / "shard-0.json").read_text())
    forged = {**claimed, "shard": "1/3", "mac": "0" * 64}
    (folder / "shard-1.json").write_text(json.dumps(forged))
    run = merge(stack, folder, Console(quiet=True))
    report = json.loads((run.folder / "report.json").read_text())
    assert not report["passed"]
    missing = {m["shard"]: m for m in report["shards"]["missing"]}
    assert set(missing) == {"0/3", "1/3"}
    assert "it ran another plan: duration_s 4.0 (planned 8.0)" in missing["0/3"]["reason"]
    assert "is not sealed with this run's key" in missing["1/3"]["reason"]
    assert all(m["planned_messages"] > 0 for m in missing.values())
    assert report["shards"]["merged"] == ["2/3"]
    assert not report["checks"]["every planned message published"]
    again = json.loads((merge(stack, folder, Console(quiet=True)).folder / "report.json").read_text())
    assert again["shards"] == report["shards"] and again["alerts"] == report["alerts"], "a merge is repeatable"
