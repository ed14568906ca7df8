"""Scenario files: the shipped ones are valid, a bad one names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.runs.scenario import SCENARIO_DIR, ScenarioError, load_scenario


def test_shipped_scenarios_load() -> None:
    names = {p.stem for p in SCENARIO_DIR.glob("*.yaml")}
    assert {"smoke", "steady", "burst", "faults", "soak"} <= names
    for name in names:
        assert load_scenario(name).name == name


def test_unknown_scenario_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match=r"shipped: .*smoke"):
        load_scenario("nope")


def test_invalid_scenario_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nfleet: simulator/fleets/smoke.yaml\nduration_s: -1\nqos: 2\n")
    with pytest.raises(ScenarioError, match=r"duration_s: .*greater than 0.*qos"):
        load_scenario(str(path))
    path.write_text("name: x\nfleet: nowhere.yaml\nduration_s: 5\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: cannot read fleet file .*nowhere\.yaml: No such file"):
        load_scenario(str(path))


def test_a_fault_must_fit_its_target_and_the_run(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    base = "name: x\nfleet: simulator/fleets/smoke.yaml\nduration_s: 30\n"
    path.write_text(base + "faults: [{at_s: 5, target: broker, action: restart}]\n")
    with pytest.raises(ScenarioError, match=r"a broker can suffer kill, pause, not restart"):
        load_scenario(str(path))
    path.write_text(base + "faults: [{at_s: 40, target: bridge, action: kill}]\n")
    with pytest.raises(ScenarioError, match=r"after the load ends \(30 s\): bridge kill"):
        load_scenario(str(path))
    path.write_text(base + "faults: [{at_s: 5, target: database, action: kill}]\n")
    with pytest.raises(ScenarioError, match=r"faults\.0\.target"):
        load_scenario(str(path))


def test_publish_expectations_are_strict_unless_a_scenario_relaxes_them() -> None:
    expect = load_scenario("smoke").expectations
    assert expect.max_publish_failures == 0 and expect.min_acked_ratio == 1.0


def test_the_chaos_scenario_hits_every_part_in_turn() -> None:
    chaos = load_scenario("chaos")
    assert {f.label for f in chaos.faults} >= {"broker kill", "bridge kill", "emulator pause", "emulator restart"}
    starts = [f.at_s for f in chaos.faults]
    assert starts == sorted(starts) and chaos.expectations.max_lost == 0
