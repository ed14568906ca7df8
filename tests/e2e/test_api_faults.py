"""AWS API faults on the stack, through the fault proxy every client of it uses (the processor's own
calls included): LocalStack's documented Chaos API request works against it, and the api-chaos
scenario, shortened, loses nothing while DynamoDB, Firehose and SNS say no under load."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError
from rich.console import Console

from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.stack import Stack
from testbed.runs.runner import run_scenario
from testbed.runs.scenario import load_scenario

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def faulty(stack: Stack) -> Iterator[Stack]:
    """The session's stack brought up behind the fault proxy for these tests, then back without it."""
    backend = stack.backend
    if not isinstance(backend, EmbeddedBackend):
        pytest.skip("the fault proxy runs in front of the emulators this project starts")
    stack.use_api_faults()
    try:
        stack.up()
        yield stack
    finally:
        stack.use_api_faults(False)
        stack.up()
        assert backend.fault_proxy.pid() is None and backend.endpoint_url() == backend.emulator_url()


def curl(*args: str) -> object:
    result = subprocess.run(["curl", "--silent", "--show-error", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_localstacks_documented_chaos_request_fails_the_calls_it_names(faulty: Stack) -> None:
    """The request from LocalStack's Chaos API guide, sent with curl to the stack's endpoint."""
    backend = faulty.backend
    assert isinstance(backend, EmbeddedBackend)
    endpoint = backend.endpoint_url()
    assert endpoint != backend.emulator_url(), "every client goes through the proxy"
    rule = {
        "service": "dynamodb",
        "region": backend.region,
        "operation": "PutItem",
        "probability": 1.0,
        "error": {"statusCode": 503, "code": "ServiceUnavailable"},
    }
    faults = f"{endpoint}/_localstack/chaos/faults"
    header = ("--header", "Content-Type: application/json")
    assert curl("--request", "POST", faults, *header, "--data", json.dumps([rule])) == [rule]
    table = faulty.outputs().telemetry_table_name
    item = {"device_id": {"S": f"chaos-{uuid.uuid4().hex[:6]}"}, "sk": {"S": "chaos-api"}}
    try:
        with pytest.raises(ClientError) as raised:
            faulty.client("dynamodb").put_item(TableName=table, Item=item)
        assert raised.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert raised.value.response["ResponseMetadata"]["RetryAttempts"] > 0, "botocore retried it, as a 503"
        faulty.client("dynamodb").get_item(TableName=table, Key=item)  # another operation: untouched
    finally:
        assert curl("--request", "DELETE", faults, *header, "--data", json.dumps([rule])) == []
    faulty.client("dynamodb").put_item(TableName=table, Item=item)
    bad = curl("--request", "PATCH", faults, *header, "--data", '[{"service": "dynamodb", "probability": 7}]')
    assert "probability" in str(bad) and curl(faults) == []


def test_the_api_chaos_scenario_shortened_loses_nothing_and_counts_each_faults_calls(
    faulty: Stack, tmp_path: Path
) -> None:
    scenario = load_scenario("api-chaos").model_dump(mode="json")
    # (at_s, down_s) of each fault in turn, SNS first; 3 s apart, the time a fault's tally takes to
    # settle, and the last over 5 s before the load ends, so the stored rate's recovery is seen. SNS
    # fails every call for 15 s: alerts are few, and a loaded machine publishes them late
    times = [(3, 15), (21, 7), (31, 5), (39, 4)]
    scenario["faults"] = [
        {**f, "at_s": at, "down_s": down} for f, (at, down) in zip(scenario["faults"], times, strict=True)
    ]
    scenario["faults"][0]["probability"] = 1.0
    scenario.update(duration_s=50, drain_timeout_s=240)
    path = tmp_path / "api-chaos-short.yaml"
    path.write_text(yaml.safe_dump(scenario))
    folder = run_scenario(faulty, load_scenario(str(path)), Console(quiet=True), reports_dir=tmp_path).folder
    report = json.loads((folder / "report.json").read_text())
    assert report["passed"], {name: report["measured"][name] for name, ok in report["checks"].items() if not ok}
    assert report["counts"]["unaccounted"] == 0 and report["counts"]["stored"] == report["counts"]["acknowledged"]
    faults = {f["fault"]: f for f in report["faults_injected"]}
    assert len(faults) == 4
    for label, fault in faults.items():
        calls = fault["calls"]
        assert fault["lost"] == 0 and calls["matched"] > 0, (label, fault)
        if "delay" in label:
            assert calls["delayed"] == calls["matched"] and calls["failed"] == 0, (label, calls)
        else:
            assert calls["failed"] > 0 and calls["retried"] > 0, (label, calls)
    assert "API calls" in (folder / "report.md").read_text()
