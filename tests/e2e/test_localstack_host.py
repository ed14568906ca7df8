"""LocalStack without Docker runs the pipeline: LocalStack 4.14.0 as a host process on 127.0.0.1,
DynamoDB from moto and Lambda as local processes (localstack_plugins/), the same Terraform, the
smoke scenario reconciled message by message; and the Lambda environments behave as Lambda's do
(a timeout, a crash at import, a handler's error, memory exhaustion), without hanging LocalStack.
The rest of the suite runs on LocalStack too; that no process outlives `down` is the stack
fixture's own check (testbed.pytest_plugin)."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from testbed.lifecycle.backends import LocalStackHostBackend
from testbed.lifecycle.ports import LOOPBACK
from testbed.lifecycle.processes import listening_sockets
from testbed.lifecycle.stack import Stack
from testbed.runs.runner import run_scenario
from testbed.runs.scenario import Scenario, load_scenario

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def localstack(stack: Stack) -> Stack:
    """The session's stack when it is LocalStack's host process (`make test` runs the suite there too)."""
    if not isinstance(stack.backend, LocalStackHostBackend):
        pytest.skip("LocalStack's own host process and Lambda executor: checked in the LocalStack session")
    return stack


def test_the_smoke_scenario_passes_on_localstack_and_the_report_says_so(localstack: Stack, tmp_path: Path) -> None:
    smoke = load_scenario("smoke").model_dump()
    # every check of the scenario but its latency bound: timing is the bench's, not a test's, to judge
    expectations = {**smoke["expectations"], "max_p99_latency_ms": None}
    scenario = Scenario.model_validate({**smoke, "duration_s": 8, "expectations": expectations})
    run = run_scenario(localstack, scenario, Console(quiet=True), reports_dir=tmp_path)
    report = json.loads((run.folder / "report.json").read_text())
    assert report["passed"], run.failures
    assert report["e2e_latency_ms"]["p99"] > 0, "the latency is measured and reported all the same"
    assert report["emulator"] == "LocalStack 4.14.0 (host process, no Docker)"
    assert report["counts"]["stored"] > 0 and report["counts"]["unaccounted"] == 0
    # the processor's own log lines (Powertools, JSON) reach CloudWatch Logs, as on Lambda
    group = localstack.outputs().function_log_group
    events = localstack.client("logs").filter_log_events(logGroupName=group)["events"]
    assert any('"level":' in event["message"] for event in events), [e["message"][:80] for e in events[:5]]
    backend = localstack.backend
    assert isinstance(backend, LocalStackHostBackend)
    pid = backend.ministack.pid()
    assert pid is not None
    assert {address for address, _ in listening_sockets(pid)} == {LOOPBACK}, "LocalStack listens on loopback only"
    assert every_start_loaded_shared_services_first(backend.ministack.log_file.read_text())


def every_start_loaded_shared_services_first(log: str) -> bool:
    """Each start of LocalStack in its log loaded iam and sts (which share moto's modules) before it
    said Ready, so no two first requests load them at once (localstack_plugins.LOADED_TOGETHER)."""
    before_each_ready = log.split("\nReady.")[:-1]
    assert before_each_ready, "LocalStack's log shows no start"
    return all("testbed: loaded iam, sts before the first request" in text for text in before_each_ready)


def test_a_localstack_that_dies_mid_run_is_named_as_the_cause_and_nothing_hangs(
    localstack: Stack, tmp_path: Path
) -> None:
    """Its free edition keeps no state: the run says the emulator went, counts the messages lost to it
    (not to the pipeline), and ends without waiting out its drain; `up` deploys the stack again."""
    backend = localstack.backend
    assert isinstance(backend, LocalStackHostBackend)
    pid = backend.ministack.pid()
    assert pid is not None
    scenario = Scenario.model_validate({**load_scenario("smoke").model_dump(), "duration_s": 6})
    forwarded_before = backend.ingress_counters().get("forwarded", 0)
    done = threading.Event()

    def kill_once_messages_flow() -> None:
        """SIGKILL as soon as the bridge has forwarded some of the run's messages (mid-run, not warm-up)."""
        while not done.wait(0.1):
            if backend.ingress_counters().get("forwarded", 0) > forwarded_before:
                os.kill(pid, signal.SIGKILL)
                return

    killer = threading.Thread(target=kill_once_messages_flow, daemon=True)
    killer.start()
    try:
        started = time.monotonic()
        run = run_scenario(localstack, scenario, Console(quiet=True), reports_dir=tmp_path)
        took = time.monotonic() - started
    finally:
        done.set()
        killer.join()
        localstack.up()
    report = json.loads((run.folder / "report.json").read_text())
    assert not report["passed"] and not report["checks"]["the emulator ran through the run"]
    said = report["measured"]["the emulator ran through the run"]
    assert f"LocalStack 4.14.0 (host process, no Docker) stopped during the run (PID {pid}" in said
    assert "keeps no state" in said and "lost to the emulator, not to the pipeline" in said
    assert report["counts"]["unaccounted"] == report["counts"]["acknowledged"] > 0 and report["counts"]["stored"] == 0
    assert took < scenario.duration_s + scenario.drain_timeout_s, "no drain was waited out"
    assert "stopped during the run" in (run.folder / "report.md").read_text()
    assert every_start_loaded_shared_services_first(backend.ministack.log_file.read_text()), "the restart too"


def _function(stack: Stack, source: str, timeout_s: int = 3, memory_mb: int = 128) -> str:
    """A throwaway python3.12 function with `source` as handler.py."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("handler.py", source)
    client = stack.client("lambda")
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role="arn:aws:iam::000000000000:role/probe",
        Handler="handler.handle",
        Code={"ZipFile": bundle.getvalue()},
        Timeout=timeout_s,
        MemorySize=memory_mb,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


def _invoke(stack: Stack, name: str, event: dict[str, Any]) -> tuple[str | None, Any]:
    answer = stack.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event))
    return answer.get("FunctionError"), json.loads(answer["Payload"].read() or b"null")


SLEEPER = "import time\ndef handle(event, context):\n    time.sleep(event['sleep'])\n    return 'done'\n"


def test_a_handler_past_its_timeout_is_stopped_and_reported_as_lambda_does(localstack: Stack) -> None:
    name = _function(localstack, SLEEPER, timeout_s=2)
    error, payload = _invoke(localstack, name, {"sleep": 30})
    assert error == "Unhandled" and payload["errorType"] == "Sandbox.Timedout"
    assert payload["errorMessage"] == "Task timed out after 2.00 seconds"
    assert _invoke(localstack, name, {"sleep": 0}) == (None, "done"), "a new environment takes the next invoke"


def test_a_crash_at_import_and_a_handlers_error_are_reported_as_lambda_does(localstack: Stack) -> None:
    broken = _function(localstack, "import no_such_module\ndef handle(event, context):\n    return 1\n")
    error, payload = _invoke(localstack, broken, {})
    assert error == "Unhandled" and "no_such_module" in json.dumps(payload)
    failing = _function(localstack, "def handle(event, context):\n    raise ValueError('bad event')\n")
    error, payload = _invoke(localstack, failing, {})
    assert error == "Unhandled" and payload["errorType"] == "ValueError" and payload["errorMessage"] == "bad event"


def test_a_handler_that_exhausts_its_memory_is_stopped_and_reported(localstack: Stack) -> None:
    name = _function(localstack, "def handle(event, context):\n    return len(b'x' * (4 * 1024**3))\n", memory_mb=128)
    error, payload = _invoke(localstack, name, {})
    assert error == "Unhandled" and payload["errorType"] == "Runtime.OutOfMemory"
