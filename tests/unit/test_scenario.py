"""Scenario files: the shipped ones are valid, a bad one names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.scenario import SCENARIO_DIR, ScenarioError, load_scenario


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
    with pytest.raises(ScenarioError, match=r"fleet file nowhere\.yaml does not exist"):
        load_scenario(str(path))
