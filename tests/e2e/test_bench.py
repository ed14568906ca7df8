"""The benchmark's yardsticks on a real stack: the emulator's ceiling is measured on throwaway
resources, and a load step's CPU is split over the processes that spent it."""

from __future__ import annotations

import time

import pytest

from testbed.bench.ceiling import CpuMeter, measure, stack_pids
from testbed.bench.fault_proxy import per_call
from testbed.bench.loadrun import run_step
from testbed.bench.raw_paho import private_broker, raw_paho, raw_receive
from testbed.bench.simulator_rate import run as simulator_bench
from testbed.lifecycle.ports import free_port
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


def test_the_raw_paho_client_delivers_its_rate_and_measures_its_cpu() -> None:
    with private_broker() as port:
        raw = raw_paho(port, connections=10, rate=200, qos=1, duration_s=2, payload_bytes=300)
    assert 350 <= raw["sent"] <= 410 and raw["acked"] == raw["sent"], raw
    assert raw["cpu_s"] > 0 and raw["cpu_us_per_msg"] > 0


def test_the_simulator_bench_sets_the_fleet_beside_the_raw_client() -> None:
    (row,) = simulator_bench(duration_s=6, workers=1, phases=(("qos1", 20, 0.1, 1, 50, False),))
    assert row["failed"] == 0 and row["delivered_msg_s"] > 150, row
    assert row["raw_paho_cpu_us_per_msg"] > 0 and row["fleet_over_raw"] == pytest.approx(
        row["cpu_us_per_msg"] / row["raw_paho_cpu_us_per_msg"], rel=0.01
    )


def test_the_raw_receiver_takes_every_message_and_measures_its_cpu() -> None:
    with private_broker() as port:
        raw = raw_receive(port, connections=10, rate=200, duration_s=2, payload_bytes=300)
    assert 350 <= raw["sent"] <= 410 and raw["received"] == raw["sent"], raw
    assert raw["cpu_s"] > 0 and raw["cpu_us_per_msg"] == pytest.approx(raw["cpu_s"] / raw["received"] * 1e6, rel=0.01)


def test_a_raw_receiver_with_no_broker_is_named_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not subscribe"):
        raw_receive(free_port(), connections=1, rate=10, duration_s=1, payload_bytes=10)
    assert time.monotonic() - started < 10, "the dead receiver is noticed, not waited for"
