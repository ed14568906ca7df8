"""Shards split a fleet so that machines that know nothing of each other publish exactly the fleet's
messages between them: disjoint, complete, and byte for byte the unsharded run's."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import cli as simulator_cli
from simulator.devices import device_ids
from simulator.fleet import load_fleet
from simulator.run import dry_run
from simulator.run_config import RunConfig
from simulator.shard import Shard, ShardError
from simulator.summary import Recorder
from testbed.paths import ROOT

KEY = b"shard-key"
FLEETS = ROOT / "simulator" / "fleets"


@pytest.mark.parametrize("fleet", ["smoke.yaml", "faults.yaml", "chaos.yaml"])
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_the_shards_dry_runs_are_the_unsharded_dry_run(tmp_path: Path, fleet: str, count: int) -> None:
    """Faults, dropouts and skewed clocks included: a device's stream is its own, wherever it runs."""
    loaded = load_fleet(FLEETS / fleet)
    whole = tmp_path / "whole.jsonl"
    dry_run(RunConfig(fleet=loaded, seed=5, key=KEY, duration_s=30, run_tag="t1"), whole)
    lines: list[bytes] = []
    devices: list[set[str]] = []
    merged = Recorder()
    for index in range(count):
        out = tmp_path / f"shard-{index}.jsonl"
        config = RunConfig(fleet=loaded, seed=5, key=KEY, duration_s=30, run_tag="t1", shard=Shard(index, count))
        merged.merge(dry_run(config, out))
        lines += out.read_bytes().splitlines()
        devices.append(set(config.device_ids()))
    assert sorted(lines) == sorted(whole.read_bytes().splitlines())
    assert set().union(*devices) == set(device_ids(loaded, "t1"))
    assert sum(len(d) for d in devices) == loaded.device_count, "no device in two shards"
    unsharded = dry_run(RunConfig(fleet=loaded, seed=5, key=KEY, duration_s=30, run_tag="t1"), tmp_path / "again.jsonl")
    assert merged.to_dict()["per_device"] == unsharded["per_device"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("3/3", "below N"),
        ("0/0", "N must be"),
        ("1", "is not i/N"),
        ("-1/3", "is not i/N"),
        ("a/b", "is not i/N"),
        ("0/10001", "N must be"),
    ],
)
def test_a_shard_that_is_not_i_of_n_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ShardError, match=problem):
        Shard.parse(text)


def test_a_shard_with_no_device_is_refused_before_anything_runs(tmp_path: Path) -> None:
    fleet = load_fleet(FLEETS / "smoke.yaml")
    shard = Shard(fleet.device_count, fleet.device_count + 1)
    with pytest.raises(ShardError, match="holds no device"):
        dry_run(RunConfig(fleet=fleet, seed=1, key=KEY, duration_s=5, shard=shard), tmp_path / "none.jsonl")


def test_the_cli_refuses_a_bad_shard_and_a_bad_run_tag(capsys: pytest.CaptureFixture[str]) -> None:
    fleet = str(FLEETS / "smoke.yaml")
    for argv, problem in (
        (["run", "--fleet", fleet, "--shard", "4/4"], "below N"),
        (["run", "--fleet", fleet, "--run-tag", "../x"], "letters and digits"),
    ):
        with pytest.raises(SystemExit) as exited:
            simulator_cli.main(argv)
        assert exited.value.code == 2
        assert problem in capsys.readouterr().err
