"""`make mutation`'s judge (tests/mutation_budget.py), on made-up results: no mutmut run needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutation_budget import (
    Allowance,
    BudgetError,
    below_floor,
    function_of,
    judge,
    load_budget,
    load_floors,
    package_scores,
)


def test_mutant_names_map_to_the_functions_they_mutate() -> None:
    assert function_of("processor.validation.x_parse__mutmut_3") == "processor.validation.parse"
    assert function_of("ingress.bridge.xǁRuleBridgeǁ_invoke__mutmut_12") == "ingress.bridge.RuleBridge._invoke"


def test_survivors_beyond_a_functions_allowance_fail_and_spare_room_is_named() -> None:
    found = {
        "m.x_a__mutmut_1": "survived",
        "m.x_a__mutmut_2": "no tests",
        "m.x_a__mutmut_3": "killed",
        "m.x_b__mutmut_1": "survived",
        "m.x_c__mutmut_1": "timeout",
    }
    verdict = judge(found, {"m.a": Allowance(2, "why"), "m.c": Allowance(1, "why")})
    assert verdict.over == {"m.b": ["m.x_b__mutmut_1"]}, "no entry: any survivor is over"
    assert verdict.slack == {"m.c": (1, 0)}
    assert verdict.counts == {"mutants": 5, "killed": 2, "survived": 3}


def test_an_unfinished_run_is_refused() -> None:
    with pytest.raises(BudgetError, match="not run"):
        judge({"m.x_a__mutmut_1": "not checked"}, {})


def test_an_entry_without_a_reason_is_refused(tmp_path: Path) -> None:
    budget = tmp_path / "budget.toml"
    budget.write_text('[[function]]\nname = "m.a"\nsurvivors = 1\nreason = " "\n')
    with pytest.raises(BudgetError, match="has no reason"):
        load_budget(budget)


def test_each_package_has_a_score_and_one_under_its_floor_fails() -> None:
    found = {
        "ingress.bridge.x_a__mutmut_1": "killed",
        "ingress.bridge.x_a__mutmut_2": "survived",
        "ingress.rule.x_b__mutmut_1": "timeout",
        "processor.x_c__mutmut_1": "killed",
    }
    scores = package_scores(found)
    assert scores == {"all": 0.75, "ingress": round(2 / 3, 4), "processor": 1.0}
    assert below_floor(scores, {"ingress": 0.7, "processor": 1.0}) == {"ingress": (0.7, round(2 / 3, 4))}
    assert below_floor(scores, {"testbed": 0.5}) == {"testbed": (0.5, 0.0)}, "a package with a floor must be run"
    assert below_floor(scores, {"all": 0.75}) == {}


def test_the_budget_file_records_a_floor_for_every_mutated_package() -> None:
    floors = load_floors()
    assert {"all", "ingress", "processor", "testbed"} <= floors.keys()
    assert all(0 < floor <= 1 for floor in floors.values())
