"""The benchmark's yardsticks on a real stack: the emulator's ceiling is measured on throwaway
resources, and a load step's CPU is split over the processes that spent it."""

from __future__ import annotations

import pytest

from testbed.bench.ceiling import CpuMeter, measure, stack_pids
from testbed.bench.fault_proxy import per_call
from testbed.bench.loadrun import run_step
from testbed.lifecycle.stack import Stack

pytestmark = pytest.mark.e2e


def test_the_ceiling_is_measured_on_throwaway_resources(stack: Stack) -> None:
    tables = set(stack.client("dynamodb").list_tables()["TableNames"])
    functions = {f["FunctionName"] for f in stack.client("lambda").list_functions()["Functions"]}
    ceiling = measure(stack, seconds=1.0)
    assert ceiling.dynamodb_items_s > 0 and ceiling.invoke_msg_s > 0
    assert ceiling.msg_s < min(ceiling.dynamodb_items_s, ceiling.invoke_msg_s)
    assert set(stack.client("dynamodb").list_tables()["TableNames"]) == tables
    assert {f["FunctionName"] for f in stack.client("lambda").list_functions()["Functions"]} == functions


def test_a_step_splits_its_cpu_over_the_stacks_processes(stack: Stack) -> None:
    pids = stack_pids(stack)
    assert {"emulator", "broker", "rule bridge"} <= set(pids)
    step = run_step(stack, devices=20, rate_msg_s=100, duration_s=3, meter=CpuMeter(pids))
    assert step.lost == 0 and step.stored > 0
    spent = step.cpu_us_per_msg
    assert set(spent) == {"emulator", "lambda workers", "broker", "rule bridge", "simulator"}
    # every process did some work for these messages; the emulator and its workers stored them
    assert all(us > 0 for us in spent.values()), spent


def test_the_fault_proxys_cost_per_call_is_measured_beside_the_direct_call(stack: Stack) -> None:
    """Its own proxy in front of the stack's emulator: the stack is not touched, both paths answer."""
    endpoint = stack.backend.endpoint_url()
    cost = per_call(stack, rounds=2, calls=20)
    assert cost["calls"] == 40
    assert 0 < cost["direct_p50_ms"] <= cost["direct_p99_ms"] and 0 < cost["proxied_p50_ms"] <= cost["proxied_p99_ms"]
    assert cost["proxy_cpu_us_per_call"] > 0, "the proxy's own process did the forwarding"
    assert stack.backend.endpoint_url() == endpoint
