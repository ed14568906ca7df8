"""The chaos scenario, shortened: a steady fleet while the broker, the bridge, the emulator and the
processor fail under it in turn. Nothing acknowledged may be lost, and the report accounts for it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.stack import Stack
from testbed.runs.runner import run_scenario
from testbed.runs.scenario import ScenarioError, load_scenario
from tests.e2e.conftest import needs_kept_state

pytestmark = pytest.mark.e2e

SHORT_FAULTS: list[dict[str, Any]] = [
    {"at_s": 8, "target": "broker", "action": "kill", "down_s": 3},
    {"at_s": 22, "target": "bridge", "action": "kill", "down_s": 3},
    {"at_s": 36, "target": "emulator", "action": "pause", "down_s": 8},
    {"at_s": 52, "target": "emulator", "action": "restart", "down_s": 1},
    {"at_s": 68, "target": "processor", "action": "throttle", "down_s": 5},
]


def test_the_chaos_scenario_loses_nothing_through_every_fault(stack: Stack, tmp_path: Path) -> None:
    """Every fault the backend can inject. LocalStack refuses to kill or restart itself up front, by
    name (its free edition keeps no state), and runs the rest, its own pause included."""
    if not isinstance(stack.backend, EmbeddedBackend):
        pytest.skip("faults are injected into the embedded backend's own processes")
    chaos = load_scenario("chaos").model_dump(mode="json")
    chaos.update(duration_s=80, drain_timeout_s=240, faults=SHORT_FAULTS)
    scenario_file = tmp_path / "chaos-short.yaml"
    scenario_file.write_text(yaml.safe_dump(chaos))
    injectable = [f for f in SHORT_FAULTS if stack.backend.fault_refusal(f["target"], f["action"]) is None]
    if injectable != SHORT_FAULTS:
        assert not stack.backend.keeps_state, "only a backend that loses its state refuses an emulator fault"
        with pytest.raises(ScenarioError, match=r"cannot inject emulator restart \(LocalStack's free edition keeps"):
            run_scenario(stack, load_scenario(str(scenario_file)), Console(quiet=True), reports_dir=tmp_path)
        chaos.update(faults=injectable)
        scenario_file.write_text(yaml.safe_dump(chaos))

    folder = run_scenario(stack, load_scenario(str(scenario_file)), Console(quiet=True), reports_dir=tmp_path).folder
    report = json.loads((folder / "report.json").read_text())

    assert report["passed"], [name for name, ok in report["checks"].items() if not ok]
    assert (
        report["counts"]["unaccounted"] == 0 and report["counts"]["failed"] == 0 and report["acknowledged_ratio"] == 1.0
    )
    assert report["reconnects"] >= 200, "every device came back after the broker's SIGKILL"
    faults = report["faults_injected"]
    assert [f["fault"] for f in faults] == [f"{f['target']} {f['action']}" for f in injectable]
    for fault in faults:
        assert fault["error"] is None and fault["lost"] == 0 and fault["known_loss"] is None, fault
        assert fault["acked_around"] > 0, fault
    assert "Faults injected" in (folder / "report.md").read_text()


def test_an_emulator_sigkill_keeps_the_last_snapshot_and_loses_what_came_after(stack: Stack) -> None:
    """ministack saves only on a graceful stop; the testbed snapshots after `up`, and on demand."""
    backend = stack.backend
    if not isinstance(backend, EmbeddedBackend):
        pytest.skip("the embedded backend's own emulator process")
    needs_kept_state(stack)
    dynamodb, table = stack.client("dynamodb"), stack.outputs().telemetry_table_name
    device = f"snap-{uuid.uuid4().hex[:6]}"

    def put(sk: str) -> None:
        dynamodb.put_item(TableName=table, Item={"device_id": {"S": device}, "sk": {"S": sk}})

    def kept(sk: str) -> bool:
        key = {"device_id": {"S": device}, "sk": {"S": sk}}
        return "Item" in dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)

    put("before-the-snapshot")
    backend.snapshot()
    put("after-the-snapshot")
    backend.inject_fault("emulator", "kill", 0)
    assert kept("before-the-snapshot"), "the snapshot survived the SIGKILL"
    assert not kept("after-the-snapshot"), "what came after it is the documented cost of a SIGKILL"
    function = stack.client("lambda").get_function(FunctionName=stack.outputs().processor_function_name)
    assert function["Configuration"]["State"] == "Active", "the deployed stack survived with its snapshot"
