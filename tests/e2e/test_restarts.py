"""What a user meets starting and stopping the stack again and again: every `up` exits 0 in every
ingress mode on a stack with state, an emulator restart (on its own port or another) leaves the
queue's event source mapping delivering, an emulator that stops answering does not hold `up` for
ever, and the processor's log lines can be read."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import uuid
from functools import partial
from typing import Any

import psutil
import pytest
from rich.console import Console
from rich.logging import RichHandler

from telemetry.credentials import device_password
from testbed.bench.fakes import sqs_event
from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.ports import LOOPBACK, free_port
from testbed.lifecycle.stack import EmulatorAborted, Stack
from testbed.lifecycle.terraform import TIMEOUT_VARIABLE, Terraform
from testbed.paths import INFRA_DIR
from testbed.stores import Stores, processor_logs, wait_for
from tests.conftest import make_message
from tests.e2e import mqtt_cli
from tests.e2e.conftest import TEST_VARIABLES, assert_only_known_drift, needs_kept_state, send
from tests.e2e.test_device_sdk import publish_and_check

pytestmark = pytest.mark.e2e


def embedded(stack: Stack) -> EmbeddedBackend:
    if not isinstance(stack.backend, EmbeddedBackend):
        pytest.skip("restarts of the embedded backend's own processes")
    return stack.backend


def key_of(message: dict[str, Any]) -> tuple[str, int, int]:
    return message["device_id"], message["ts"], message["msg_id"]


def reading(signing_key: bytes) -> dict[str, Any]:
    return make_message(device_id=f"restart-{uuid.uuid4().hex[:6]}", key=signing_key)


def test_after_an_emulator_restart_the_queue_is_reported_and_its_mapping_delivers(
    stack: Stack, stores: Stores, signing_key: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    needs_kept_state(stack)
    backend = embedded(stack)
    with caplog.at_level(logging.INFO, logger="testbed"):
        backend.inject_fault("emulator", "restart", 0)
    queue = stack.outputs().ingest_queue_url.rsplit("/", 1)[-1]
    assert re.search(rf"queue {queue} -> \S+ \(Enabled\): \d+ waiting, \d+ in flight from before", caplog.text)
    message = reading(signing_key)
    send(stack, [json.dumps(message)])
    wait_for("a reading through the queue's mapping", lambda: stores.reading(*key_of(message)), 90)


def test_the_processors_log_lines_are_readable(stack: Stack, stores: Stores, signing_key: bytes) -> None:
    """Invoked as the bridge invokes it: its Powertools lines land in its CloudWatch log group."""
    message = reading(signing_key)
    event = sqs_event([json.dumps(message)])
    response = stack.client("lambda").invoke(
        FunctionName=stack.outputs().processor_function_name, Payload=json.dumps(event).encode()
    )
    assert json.loads(response["Payload"].read()) == {"batchItemFailures": []}
    group = stack.outputs().function_log_group
    logs = stack.client("logs")
    try:
        lines = wait_for(
            "the processor's log lines",
            lambda: [line for line in processor_logs(logs, group, 600, 500) if "batch processed" in line],
            30,
        )
    except TimeoutError:
        pytest.fail(f"no 'batch processed' line in {group}; its latest: {processor_logs(logs, group, 600, 15)}")
    assert lines[-1][:4].isdigit(), "each line starts with its UTC time"


def test_up_and_down_again_in_every_ingress_mode(stack: Stack) -> None:
    """As `make down` / `make up` run them: the CLI's rich log handler raises on a bad log call."""
    needs_kept_state(stack)
    backend = embedded(stack)
    log = logging.getLogger("testbed")
    handler, level = RichHandler(console=Console(quiet=True)), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        for mode in ("iot", "iot", "sqs", stack.ingress):  # iot twice: a second up found no bridge and crashed
            again = Stack(backend, variables=TEST_VARIABLES, ingress=mode)
            again.down()
            again.up()
            assert backend.ingress_mode() == mode and backend.healthy()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def test_up_names_a_queue_whose_mapping_takes_nothing(stack: Stack, stores: Stores, signing_key: bytes) -> None:
    backend = embedded(stack)
    lambda_client = stack.client("lambda")
    (mapping,) = [
        m for m in lambda_client.list_event_source_mappings()["EventSourceMappings"] if ":sqs:" in m["EventSourceArn"]
    ]
    queue = mapping["EventSourceArn"].rsplit(":", 1)[-1]
    message = reading(signing_key)
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)  # a poller that takes nothing
    try:
        send(stack, [json.dumps(message)])
        (problem,) = backend.verify_delivery(wait_s=5)
        assert f"queue {queue} holds 1 waiting message(s)" in problem
    finally:
        lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    assert backend.verify_delivery(wait_s=60) == [], "once it delivers, nothing is named"
    wait_for("the reading it then delivered", lambda: stores.reading(*key_of(message)), 90)


def test_state_made_on_other_ports_moves_its_queues_and_delivers_in_every_ingress_mode(
    stack: Stack, signing_key: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Queue URLs carry the emulator's port: after a move (the emulator's, the broker's and IoT Core's
    ports), the queues (and a message waiting in one), Terraform's ids, the outputs and the IoT rule's
    action all name the new port, and every ingress path delivers."""
    needs_kept_state(stack)
    backend = embedded(stack)
    first_port = backend.ministack_port
    waiting = reading(signing_key)
    (mapping,) = [
        m
        for m in stack.client("lambda").list_event_source_mappings()["EventSourceMappings"]
        if ":sqs:" in m["EventSourceArn"]
    ]
    stack.client("lambda").update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    send(stack, [json.dumps(waiting)])  # still on the queue when the emulator stops
    Stack(backend, variables=TEST_VARIABLES, ingress=stack.ingress).down()
    first_ports = backend.ministack_port, backend.mqtt_port, backend.iot_mqtt_port
    backend.ministack_port, backend.mqtt_port, backend.iot_mqtt_port = free_port(), free_port(), free_port()
    try:
        moved = Stack(backend, variables=TEST_VARIABLES, ingress=stack.ingress)
        with caplog.at_level(logging.INFO, logger="testbed"):
            moved.up()
        assert f"made with MINISTACK_PORT={first_port}: its queues now have URLs on {backend.ministack_port}" in (
            caplog.text
        )
        # the taps' policies moved with their queues, in Terraform's state, rather than being replaced
        assert f'aws_sqs_queue_policy.tap["ops"] now at http://{LOOPBACK}:{backend.ministack_port}/' in caplog.text
        assert_only_known_drift(moved)
        outputs = moved.outputs()
        assert f":{backend.ministack_port}/" in outputs.ingest_queue_url
        assert not list(INFRA_DIR.glob("*.backup")), "the re-import's state backups stay out of the source tree"
        rule = moved.client("iot").get_topic_rule(ruleName=outputs.iot_rule_name)["rule"]
        assert [a["sqs"]["queueUrl"] for a in rule["actions"]] == [outputs.ingest_queue_url]
        moved.client("lambda").update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
        stores = Stores.connect(outputs, moved.client)
        wait_for("the reading that waited on the queue", lambda: stores.reading(*key_of(waiting)), 90)
        for mode in ("direct", "sqs", "iot"):
            moved.use_ingress(mode)
            device = f"port-{mode}-{uuid.uuid4().hex[:6]}"
            backend.provision_devices([device])
            if mode == "iot":
                publish_and_check(backend, stores, device, signing_key)
                continue
            message = make_message(device_id=device, key=signing_key)
            password = device_password(backend.broker_secret(), device)
            mqtt_cli.mosquitto_pub(
                LOOPBACK, backend.mqtt_port, device, password, f"sensors/{device}/telemetry", json.dumps(message)
            )
            wait_for(f"a reading through {mode} ingress", partial(stores.reading, *key_of(message)), 90)
    finally:
        # up again on the first ports while running on the others: the servers follow (no down needed)
        backend.ministack_port, backend.mqtt_port, backend.iot_mqtt_port = first_ports
        Stack(backend, variables=TEST_VARIABLES, ingress=stack.ingress).up()
    assert backend.healthy()
    assert backend.bridge.started_with() == {"broker_port": first_ports[1], "endpoint": backend.endpoint_url()}


def test_an_emulator_that_stops_answering_terraform_is_stopped_with_its_threads_stacks_in_its_log(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider sets no response timeout: an emulator that accepts calls and never answers held
    `up` for ever. It is stopped at the limit, and what each of its threads was doing is in its log."""
    pid = stack.backend.emulator_pid()
    assert pid is not None
    apply = Terraform.apply

    def apply_on_a_paused_emulator(self: Terraform) -> None:
        os.kill(pid, signal.SIGSTOP)
        apply(self)

    log = stack.backend.log_files()["emulator"]
    written = log.stat().st_size
    try:
        with monkeypatch.context() as patched:
            patched.setattr(Terraform, "apply", apply_on_a_paused_emulator)
            patched.setenv(TIMEOUT_VARIABLE, "20")
            with pytest.raises(EmulatorAborted, match=r"(?s)ran past 20 s and was stopped.*threads was doing"):
                stack.up()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        with open(log, errors="replace") as text:
            text.seek(written)
            said = text.read()
        assert "Fatal Python error: Aborted" in said and "most recent call first" in said, said[-3000:]
    finally:
        stack.up()
    assert stack.backend.healthy()
