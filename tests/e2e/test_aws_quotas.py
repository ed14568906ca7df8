"""AWS IoT Core's quotas on the session's stack: with the quota gate in front of the broker, the
aws-quotas scenario's gateway (150 msg/s at QoS 1) is throttled, keeps its connection, and its
resends deliver everything; the report lists it with its hits and resends; the parity row follows
the gate. The gate is turned off again after each test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from ingress.quotas.limits import IotQuotas, Quota
from testbed.lifecycle.stack import Stack
from testbed.parity.report import PROBES, context_of
from testbed.parity.types import Verdict
from testbed.runs.runner import run_scenario
from testbed.runs.scenario import ScenarioError, load_scenario

pytestmark = pytest.mark.e2e
PARITY_ROW = "IoT Core message broker quotas"


def quota_row(stack: Stack) -> tuple[Verdict, str]:
    (probe,) = [probe for features, probe in PROBES if PARITY_ROW in features]
    (row,) = [row for row in probe(context_of(stack)) if row.feature == PARITY_ROW]
    return row.verdict, row.backend


@pytest.fixture
def gated(stack: Stack) -> Iterator[Stack]:
    if stack.backend.quota_gate() is None and not stack.backend.local_processes:
        pytest.skip("the quota gate stands in front of a local broker")
    stack.use_aws_quotas(IotQuotas())
    stack.backend.start()
    try:
        yield stack
    finally:
        stack.use_aws_quotas(None)
        stack.backend.start()


def test_the_parity_row_says_whether_the_quotas_hold(stack: Stack) -> None:
    if not stack.backend.local_processes:
        pytest.skip("the quota gate stands in front of a local broker")
    verdict, found = quota_row(stack)
    assert verdict is Verdict.DIFFERS and found.startswith("150 of 150"), found
    stack.use_aws_quotas(IotQuotas())
    stack.backend.start()
    try:
        verdict, found = quota_row(stack)
    finally:
        stack.use_aws_quotas(None)
        stack.backend.start()
    assert verdict is Verdict.SAME and "the connection kept" in found, found


def test_a_gateway_over_the_quota_is_throttled_resends_and_loses_nothing(gated: Stack, tmp_path: Path) -> None:
    scenario = load_scenario("aws-quotas").model_copy(update={"duration_s": 10.0})
    report = json.loads(
        (run_scenario(gated, scenario, Console(quiet=True), reports_dir=tmp_path).folder / "report.json").read_text()
    )
    assert report["passed"], {name: report["measured"][name] for name, ok in report["checks"].items() if not ok}
    counts = report["counts"]
    assert counts["unaccounted"] == 0 and counts["stored"] == counts["acknowledged"] == counts["planned"]
    assert counts["throttled_publishes"] > 0 and counts["resends"] >= counts["throttled_publishes"]
    assert report["reconnects"] == 0, "throttling never closed a connection"
    quotas = report["aws_quotas"]
    (gateway,) = quotas["devices"]  # the sensors at 1 Hz never hit a quota
    row = quotas["devices"][gateway]
    assert gateway.startswith("environmental") or "env" in gateway, gateway
    assert (
        list(row["by_quota"]) == [Quota.PUBLISH_RATE.value]
        and row["resends"] >= row["by_quota"][Quota.PUBLISH_RATE.value]
    )
    assert row["failed"] == 0 and 0 <= row["first_s"] <= row["last_s"]
    assert "## AWS IoT Core quotas" in (tmp_path / report["run_id"] / "report.md").read_text()


def test_a_scenario_with_quotas_the_gate_does_not_hold_is_refused(stack: Stack, tmp_path: Path) -> None:
    if stack.backend.quota_gate() is not None:
        pytest.skip("the session's stack runs a gate")
    with pytest.raises(ScenarioError, match="quota gate"):
        run_scenario(stack, load_scenario("aws-quotas"), Console(quiet=True), reports_dir=tmp_path)
