"""Fault accounting and the throughput series: what the report says about each fault."""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pytest

from testbed.lifecycle.backends import LocalStackHostBackend, get_backend
from testbed.lifecycle.stack import Stack
from testbed.runs.faults import FaultSchedule, FaultSpec, InjectedFault, fault_accounting
from testbed.runs.plots import per_second
from testbed.runs.runner import fault_schedule
from testbed.runs.scenario import ScenarioError

KILL = FaultSpec(at_s=10, target="broker", action="kill", down_s=3)


def test_a_fault_counts_the_messages_around_it_and_when_storage_recovered() -> None:
    fault = InjectedFault(KILL, started=1000.0, recovered=1003.0)
    acked_at = {("d", n): 990.0 + n for n in range(30)}  # one a second, 990 to 1019
    stored = {s: 10 for s in range(985, 1000)} | {1000: 2, 1001: 0, 1002: 0, 1003: 3, 1004: 9, 1005: 10}
    out = fault_accounting(fault, acked_at, {("d", 11)}, {("d", 12): 2, ("d", 1): 2}, stored)
    assert out["acked_around"] == 14  # due 995 .. 1008
    assert out["lost"] == 1 and out["duplicated"] == 1
    assert out["recovered_after_s"] == 4.0  # 1004 is the first second back at 80% of the rate before
    assert out["back_after_s"] == 3.0 and out["fault"] == "broker kill"
    assert out["known_loss"] is None, "nothing excuses a loss in a broker kill"


def test_an_emulator_kill_names_the_loss_the_emulator_cannot_avoid() -> None:
    kill = FaultSpec(at_s=1, target="emulator", action="kill", down_s=0)
    out = fault_accounting(InjectedFault(kill, started=10.0, recovered=12.0), {}, set(), {}, {})
    assert "saves it only on a graceful stop" in out["known_loss"]


def test_a_fault_after_which_storage_never_recovered_says_so() -> None:
    fault = InjectedFault(KILL, started=1000.0, recovered=1001.0)
    out = fault_accounting(fault, {}, set(), {}, {s: 10 for s in range(990, 1000)})
    assert out["recovered_after_s"] is None


def test_a_second_without_stores_is_a_zero_not_a_gap() -> None:
    stored = np.array([100.1, 100.5, 101.2, 104.9])
    assert per_second(stored, 100, 105).tolist() == [2, 1, 0, 0, 1, 0]


def test_a_backend_that_cannot_inject_a_fault_refuses_the_scenario_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSTACK_RUNNER", "docker")
    stack = Stack(get_backend("localstack"))
    with pytest.raises(ScenarioError, match=r"localstack backend cannot inject broker kill"):
        fault_schedule(stack, (KILL,), "processor")
    throttle = FaultSpec(at_s=1, target="processor", action="throttle")
    assert fault_schedule(stack, (throttle,), "processor").specs == [throttle]


@pytest.mark.parametrize("action", ["kill", "restart"])
def test_localstack_without_docker_refuses_to_kill_itself_by_name_and_pauses(
    action: Literal["kill", "restart"],
) -> None:
    """Its free edition keeps no state: the scenario is refused before it starts, saying why."""
    stack = Stack(LocalStackHostBackend())
    emulator = FaultSpec(at_s=1, target="emulator", action=action, down_s=1)
    with pytest.raises(ScenarioError, match=rf"cannot inject emulator {action} \(LocalStack's free edition keeps no"):
        fault_schedule(stack, (KILL, emulator), "processor")
    pause = FaultSpec(at_s=1, target="emulator", action="pause", down_s=1)
    assert fault_schedule(stack, (KILL, pause), "processor").specs == [KILL, pause]


def test_a_cancelled_schedule_starts_no_further_fault_but_finishes_the_current_one() -> None:
    started: list[str] = []

    def inject(spec: FaultSpec) -> None:
        started.append(spec.label)
        time.sleep(0.3)

    later = FaultSpec(at_s=30, target="bridge", action="kill")
    schedule = FaultSchedule([FaultSpec(at_s=0, target="broker", action="pause"), later], inject)
    schedule.start(at=time.time())
    time.sleep(0.1)
    schedule.cancel()
    assert started == ["broker pause"] and [f.spec.label for f in schedule.done] == ["broker pause"]
