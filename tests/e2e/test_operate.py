"""Living with a running stack from the shell: status, inspect, logs, and env for the AWS tools."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from telemetry import new_message
from testbed.lifecycle.backends import EmbeddedBackend
from testbed.lifecycle.stack import Stack
from testbed.operate.inspect import inventory
from testbed.paths import ROOT
from testbed.stores import Stores, wait_for
from tests.e2e.conftest import as_json, send

WAIT_S = 90.0
VENV_BIN = Path(sys.executable).parent


def embedded(stack: Stack) -> EmbeddedBackend:
    if not isinstance(stack.backend, EmbeddedBackend):
        pytest.skip("drives the embedded backend's processes and files")
    return stack.backend


def cli_env(backend: EmbeddedBackend) -> dict[str, str]:
    """The test stack as the CLI finds it (its ports and state folder), wide enough for the tables."""
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "MINISTACK_PORT": str(backend.ministack_port),
        "MQTT_PORT": str(backend.mqtt_port),
        "IOT_MQTT_PORT": str(backend.iot_mqtt_port),
        "EMBEDDED_STATE_DIR": str(backend.state_dir),
        # as the session's stack runs: a command that calls `up` with another setting would restart it
        "IAM": backend.iam,
        # the same stack when the session's is LocalStack's host process (LocalStackHostBackend.from_env)
        "LOCALSTACK_PORT": str(backend.ministack_port),
        "LOCALSTACK_STATE_DIR": str(backend.state_dir),
        "COLUMNS": "250",
    }


def run_cli(backend: EmbeddedBackend, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "testbed", *args], env=cli_env(backend), cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def message(signing_key: bytes, device: str) -> dict[str, Any]:
    return new_message(
        device_id=device,
        msg_id=1,
        ts=int(time.time() * 1000),
        device_type="power_meter",
        firmware="3.0.1",
        readings={"voltage": (231.5, "V"), "current": (4.2, "A")},
        key=signing_key,
    )


def test_status_names_each_process_its_pid_and_port(stack: Stack) -> None:
    backend = embedded(stack)
    out = run_cli(backend, "status")
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 4}
    emulator, broker = backend.ministack.pid(), backend.mosquitto.pid()
    assert emulator and broker
    assert f"running │ {emulator}" in rows["emulator"] and f"127.0.0.1:{backend.ministack_port}" in rows["emulator"]
    assert f"running │ {broker}" in rows["broker"] and f"127.0.0.1:{backend.mqtt_port}" in rows["broker"]
    if "iot" in backend.ingress_modes:
        assert f"127.0.0.1:{backend.iot_mqtt_port}" in rows["IoT MQTT over TLS"]
    else:
        assert "IoT MQTT over TLS" not in rows, "no IoT Core, no row for it"
    assert f"ingress mode: {backend.ingress_mode()}" in out
    assert f"stack outputs: {stack.outputs_file} (written " in out
    refused = backend.broker_refusals(0)
    shown = ", ".join(f"{n:,} {kind}" for kind, n in refused.items()) or "nothing"
    assert f"refused by the broker: {shown}" in out


def test_inspect_counts_what_the_processor_stored_and_quarantined(
    stack: Stack, stores: Stores, signing_key: bytes
) -> None:
    backend = embedded(stack)
    before = inventory(stores)
    good, forged = f"inspect-{uuid.uuid4().hex[:8]}", f"inspect-{uuid.uuid4().hex[:8]}"
    forged_message = message(b"not the stack's key", forged)
    send(stack, [as_json(message(signing_key, good)), as_json(forged_message)])
    wait_for("the good reading", lambda: stores.readings(good) or None, WAIT_S)
    wait_for("the forged one quarantined", lambda: [q for q in stores.quarantined() if forged in q["body"]], WAIT_S)
    after = json.loads(run_cli(backend, "inspect", "--json"))
    assert after["telemetry_items"] >= before.telemetry_items + 1
    previous = before.quarantine_reasons.get("bad_signature", (0, 0.0))[0]
    assert after["quarantine_reasons"]["bad_signature"]["count"] >= previous + 1
    assert after["archive_objects"] >= before.archive_objects + 1
    table = run_cli(backend, "inspect")
    assert "telemetry table items" in table and "bad_signature" in table


def test_env_points_the_aws_cli_awslocal_and_terraform_at_the_stack(stack: Stack, tmp_path: Path) -> None:
    backend = embedded(stack)
    outputs = stack.outputs()
    queue_name = outputs.ingest_queue_url.rsplit("/", 1)[1]
    topic_name = f"tflocal-probe-{uuid.uuid4().hex[:8]}"
    probe = tmp_path / "probe"
    probe.mkdir()
    # an SNS topic: Terraform creates and deletes it at once (a queue costs the provider's 25 s waits)
    (probe / "main.tf").write_text(
        f'resource "aws_sns_topic" "probe" {{\n  name = "{topic_name}"\n}}\n'
        'output "arn" {\n  value = aws_sns_topic.probe.arn\n}\n'
    )
    script = f"""
set -euo pipefail
eval "$({sys.executable} -m testbed env)"
aws dynamodb describe-table --table-name {outputs.telemetry_table_name} --output json > aws.json
awslocal sqs get-queue-url --queue-name {queue_name} --output json > awslocal.json
cd probe
tflocal init -input=false > /dev/null
tflocal apply -auto-approve -input=false > /dev/null
aws sns get-topic-attributes --topic-arn "$(tflocal output -raw arn)" --output json > ../topic.json
tflocal destroy -auto-approve -input=false > /dev/null
"""
    ours = ("LOCALSTACK_PORT", "LOCALSTACK_STATE_DIR", "LOCALSTACK_RUNNER")  # which stack: not awslocal's settings
    env = {k: v for k, v in cli_env(backend).items() if k in ours or not k.startswith(("AWS_", "TF_", "LOCALSTACK_"))}
    result = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "aws.json").read_text())["Table"]["TableName"] == outputs.telemetry_table_name
    queue_url = json.loads((tmp_path / "awslocal.json").read_text())["QueueUrl"]
    assert queue_url.endswith(f":{backend.ministack_port}/000000000000/{queue_name}")
    made = json.loads((tmp_path / "topic.json").read_text())["Attributes"]["TopicArn"]
    assert made.endswith(f":{topic_name}"), "tflocal applied to the stack the AWS CLI reads"
    topics = [t["TopicArn"] for t in stack.client("sns").list_topics()["Topics"]]
    assert made not in topics and outputs.alerts_topic_arn in topics, "and tflocal destroyed it there"


def test_logs_show_each_source_and_follow_the_processor(stack: Stack, signing_key: bytes) -> None:
    backend = embedded(stack)
    out = run_cli(backend, "logs", "--limit", "3")
    prefixes = {line.split(" | ", 1)[0].strip() for line in out.splitlines() if " | " in line}
    assert {"emulator", "broker", "lambda"} <= prefixes
    if backend.bridge.pid() is not None:
        assert "bridge" in prefixes
    follower = subprocess.Popen(
        [sys.executable, "-m", "testbed", "logs", "--follow", "--source", "lambda", "--limit", "1", "--since", "0"],
        env=cli_env(backend),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert follower.stdout is not None
    stream = follower.stdout

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        time.sleep(3)  # the follower has read the group once: what comes now is new
        send(stack, [as_json(message(signing_key, f"logs-{uuid.uuid4().hex[:8]}"))])
        deadline, seen = time.monotonic() + WAIT_S, []
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            if seen[-1].startswith("lambda | ") and "batch processed" in seen[-1]:
                break
        else:
            pytest.fail(f"no processor line followed within {WAIT_S:.0f} s: {seen[-5:]}")
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def _simulate_and_interrupt(backend: EmbeddedBackend, interrupts: list[float]) -> tuple[int, list[str], float]:
    """`testbed simulate smoke` as a user runs it, SIGINT sent at each of `interrupts` seconds after its
    processor is warm; its exit status, its output lines, and seconds from the first SIGINT to its end."""
    process = subprocess.Popen(
        # the session's stack as deployed: `up` from here would apply the CLI's own variables over it
        [sys.executable, "-m", "testbed", "simulate", "smoke", "--no-up"],
        env=cli_env(backend),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    # the processor warmed, the fleet connects and publishes next (a Ctrl-C before that ends at once)
    while not any("processor environment(s) warm" in line for line in seen):
        seen.append(lines.get(timeout=300))
    said = time.monotonic()
    for at in interrupts:
        time.sleep(max(0.0, said + at - time.monotonic()))
        process.send_signal(signal.SIGINT)
    first = said + interrupts[0]
    status = process.wait(timeout=300)
    ended = time.monotonic() - first
    while not lines.empty():
        seen.append(lines.get())
    return status, seen, ended


def test_ctrl_c_during_a_run_stops_publishing_and_writes_the_report_marked_interrupted(stack: Stack) -> None:
    """The fleet stops, what it sent drains for a bounded time and is accounted (nothing acknowledged
    lost), the report says INTERRUPTED, and the exit status is 130, without a traceback."""
    backend = embedded(stack)
    status, lines, ended = _simulate_and_interrupt(backend, [6.0])
    out = "".join(lines)
    assert status == 130, out[-3000:]
    assert "Traceback" not in out
    folder = Path(lines[-1].strip())
    try:
        report = json.loads((folder / "report.json").read_text())
        assert report["interrupted"] and not report["passed"] and not report["checks"]["ran to the end"]
        assert report["counts"]["publishes"] > 0 and report["counts"]["unaccounted"] == 0, report["counts"]
        assert not report["checks"]["every planned message published"], "the rest of the plan was not sent"
        assert report["counts"]["not_sent"] > 0 and report["checks"]["the counts add up"], report["sums"]
        assert "smoke - INTERRUPTED" in (folder / "report.md").read_text()
        assert ended < 30 + 30, "publishing stopped at once; the drain is bounded"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_second_ctrl_c_stops_at_once(stack: Stack) -> None:
    backend = embedded(stack)
    status, lines, ended = _simulate_and_interrupt(backend, [4.0, 5.0])
    out = "".join(lines)
    assert status == 130 and "Traceback" not in out, out[-3000:]
    assert "interrupted" in out and ended < 20, ended
