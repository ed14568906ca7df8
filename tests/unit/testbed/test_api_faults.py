"""A scenario's `api` faults: what a scenario file may say, how a fault is set and lifted on a real
fault proxy while calls flow through it, and what the report says of each."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from testbed.lifecycle.backends import EmbeddedBackend
from testbed.lifecycle.stack import Stack
from testbed.runs.api_faults import ApiFaults
from testbed.runs.faults import FaultError, FaultSchedule, FaultSpec, InjectedFault, calls_text, fault_accounting
from testbed.runs.report import checks
from testbed.runs.runner import fault_schedule
from testbed.runs.scenario import ScenarioError, load_scenario
from tests.unit.testbed.test_report import outcome

THROTTLE = {
    "at_s": 1,
    "target": "api",
    "action": "fail",
    "service": "dynamodb",
    "operation": "BatchWriteItem",
    "probability": 0.5,
    "error": {"statusCode": 400, "code": "ProvisionedThroughputExceededException"},
    "down_s": 1,
}


def write_scenario(tmp_path: Path, fault: dict[str, Any]) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nfleet: simulator/fleets/smoke.yaml\nduration_s: 5\nfaults:\n"
        + "".join(f"  - {line}\n" for line in [str(fault).replace("'", '"')])
    )
    return path


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"service": None}, "names the service"),
        ({"service": "dynamo"}, "unknown service 'dynamo'"),
        ({"operation": "Publish"}, "dynamodb has no operation 'Publish'"),
        ({"probability": 1.5}, "probability"),
        ({"latency_ms": 100}, "`latency_ms` goes with action delay"),
        ({"action": "delay", "error": None}, "delay needs it"),
        ({"action": "delay", "latency_ms": 100}, "a delay passes the calls on"),
        ({"action": "kill"}, "a api can suffer fail, delay, not kill"),
        ({"target": "broker", "action": "kill"}, "only for an `api` fault"),
        ({"error": {"statusCode": 200, "code": "X"}}, "statusCode"),
    ],
)
def test_a_wrong_api_fault_refuses_the_scenario_saying_why(tmp_path: Path, change: dict[str, Any], reason: str) -> None:
    fault = {k: v for k, v in {**THROTTLE, **change}.items() if v is not None}
    with pytest.raises(ScenarioError, match=reason):
        load_scenario(str(write_scenario(tmp_path, fault)))


def test_an_api_fault_is_the_chaos_api_rule_the_scenario_describes() -> None:
    spec = FaultSpec.model_validate(THROTTLE)
    assert spec.rule().model_dump(exclude_none=True) == {
        "service": "dynamodb",
        "operation": "BatchWriteItem",
        "probability": 0.5,
        "error": {"statusCode": 400, "code": "ProvisionedThroughputExceededException"},
    }
    assert spec.label == "api dynamodb.BatchWriteItem fail ProvisionedThroughputExceededException 50%"
    delay = FaultSpec(at_s=0, target="api", action="delay", service="sns", latency_ms=250)
    assert delay.rule().model_dump(exclude_none=True) == {"service": "sns", "latency": 250}
    assert delay.label == "api sns.* delay 250 ms"
    bare = FaultSpec(at_s=0, target="api", action="fail", service="sqs")
    assert bare.label == "api sqs.* fail ServiceUnavailable", "LocalStack's default error"


def test_the_shipped_api_chaos_scenario_hits_each_api_the_processor_calls() -> None:
    scenario = load_scenario("api-chaos")
    hit = {(f.service, f.operation) for f in scenario.faults}
    assert hit == {("dynamodb", "BatchWriteItem"), ("firehose", "PutRecordBatch"), ("sns", "Publish")}
    source = "\n".join(p.read_text() for p in Path("processor").glob("*.py"))
    for name in ("batch_write_item", "put_record_batch", ".publish("):
        assert name in source, f"the processor no longer calls {name}: the scenario would match nothing"
    assert scenario.expectations.max_lost == 0


def test_a_stack_without_the_proxy_refuses_api_faults_up_front(tmp_path: Path) -> None:
    stack = Stack(EmbeddedBackend(state_dir=tmp_path))
    with pytest.raises(ScenarioError, match="need the API fault proxy"):
        fault_schedule(stack, (FaultSpec.model_validate(THROTTLE),), "processor")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[str]:
    """The fault proxy in front of nothing: every call no rule fails is a 502 (the SDK's retries then
    end in an error all the same), which is all a rule's tally needs."""
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "fault_proxy", "--upstream", "http://127.0.0.1:9", "--port-file", str(port_file)]
    )
    while not port_file.exists():
        assert process.poll() is None
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port_file.read_text()}"
    process.terminate()
    process.wait(10)


def dynamodb(url: str) -> Any:
    config = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=5)
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )


def throttled(url: str, calls: int) -> list[bool]:
    client, seen = dynamodb(url), []
    for _ in range(calls):
        try:
            client.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": {"k": {"S": "1"}}}}]})
        except ClientError as exc:
            seen.append(exc.response["Error"]["Code"] == "ProvisionedThroughputExceededException")
    return seen


def test_an_api_fault_is_set_for_its_time_then_lifted_and_its_calls_are_counted(proxy: str) -> None:
    # long enough for three calls and their retries' back-off (up to a second each under throttling)
    spec = FaultSpec.model_validate({**THROTTLE, "probability": 1.0, "down_s": 6})
    faults = ApiFaults(proxy)
    done: list[dict[str, int]] = []
    injector = threading.Thread(target=lambda: done.append(faults.inject(spec)))
    injector.start()
    time.sleep(0.3)
    during = throttled(proxy, 3)
    injector.join()
    after = throttled(proxy, 3)
    assert during == [True] * 3 and after == [False] * 3, "failed while set, passed on after"
    (calls,) = done
    assert calls["matched"] == calls["failed"] == 3 * 2, "each call and its one retry"
    assert calls["retried"] == 3 and calls["reached_caller"] == 3
    assert calls_text(calls) == "6 matched, 6 failed, 3 retried, 3 not retried (the caller got the error)"


def test_the_same_seed_fails_the_same_calls(proxy: str) -> None:
    spec = FaultSpec.model_validate({**THROTTLE, "probability": 0.5, "down_s": 0})
    faults = ApiFaults(proxy)
    runs = []
    for seed in (5, 5, 6):
        faults.seed(seed)
        rule = spec.rule().model_dump(mode="json", exclude_none=True)
        faults._call("PATCH", "/_localstack/chaos/faults", [rule])
        runs.append(throttled(proxy, 20))
        faults._call("DELETE", "/_localstack/chaos/faults", [rule])
    assert runs[0] == runs[1] != runs[2]
    assert 0 < sum(runs[0]) < 20


def test_a_proxy_that_is_not_there_is_a_fault_error_naming_it() -> None:
    with pytest.raises(FaultError, match="did not answer"):
        ApiFaults("http://127.0.0.1:9").seed(1)


def test_the_report_fails_a_run_whose_api_fault_matched_no_call() -> None:
    spec = FaultSpec.model_validate(THROTTLE)
    idle = InjectedFault(
        spec,
        started=1000.0,
        recovered=1001.0,
        calls=dict.fromkeys(("matched", "failed", "delayed", "retried", "reached_caller"), 0),
    )
    tally = fault_accounting(idle, {}, set(), {}, {s: 5 for s in range(990, 1010)})
    held = checks_of([tally])
    assert not held["every API fault matched calls"].held
    assert "matched no call: api dynamodb.BatchWriteItem" in held["every API fault matched calls"].measured
    busy = {**tally, "calls": {**tally["calls"], "matched": 40, "failed": 20, "retried": 19}}
    assert checks_of([busy])["every API fault matched calls"].held


def checks_of(faults: list[dict[str, Any]]) -> dict[str, Any]:
    return checks(outcome("api-chaos", faults=faults))


def test_dead_lettered_messages_around_a_fault_are_counted_apart_from_the_lost() -> None:
    spec = FaultSpec.model_validate(THROTTLE)
    fault = InjectedFault(spec, started=1000.0, recovered=1002.0)
    acked_at = {("d", n): 995.0 + n for n in range(10)}
    out = fault_accounting(fault, acked_at, {("d", 1)}, {}, {}, frozenset({("d", 2), ("d", 3), ("x", 9)}))
    assert (out["lost"], out["dead_lettered"]) == (1, 2)


def test_an_api_fault_is_over_when_its_rule_is_lifted_not_when_its_tally_is_read() -> None:
    spec = FaultSpec.model_validate({**THROTTLE, "at_s": 0, "down_s": 0.2})

    def inject(_: FaultSpec) -> dict[str, int]:
        time.sleep(0.6)  # the hold, then the settle before the tally
        return dict.fromkeys(("matched", "failed", "delayed", "retried", "reached_caller"), 1)

    schedule = FaultSchedule([spec], inject)
    schedule.start(at=time.time())
    (fault,) = schedule.join()
    assert fault.recovered == pytest.approx(fault.started + 0.2)
    assert fault.calls is not None and fault.calls["matched"] == 1
