"""The testbed's own plumbing: bundle build, Terraform CLI config, ports and PID files."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from testbed import cli
from testbed.exceptions import TestbedError
from testbed.lifecycle import terraform
from testbed.lifecycle.backends import BackendError, EmbeddedBackend, ExternalBackend
from testbed.lifecycle.backends.ministack_process import (
    MINISTACK_LAMBDA_COPY_PREFIX,
    clean_stale_lambda_copies,
    note_port,
    recorded_port,
    state_port_file,
)
from testbed.lifecycle.build import build
from testbed.lifecycle.infra import Infrastructure
from testbed.lifecycle.ports import LOOPBACK, PortInUseError, free_port, port_in_use
from testbed.lifecycle.processes import ManagedProcess, listening_sockets
from testbed.lifecycle.stack import Stack


def test_bundle_is_deterministic_and_pure_python(tmp_path: Path) -> None:
    first, second = build(tmp_path / "a.zip"), build(tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    assert "processor/handler.py" in names and "telemetry/schema.py" in names
    assert any(n.startswith("aws_lambda_powertools/") for n in names)
    assert not any(n.endswith((".so", ".pyc")) or "__pycache__" in n for n in names)
    assert not any(n.startswith(("boto3/", "botocore/")) for n in names), "boto3 comes with the runtime"


def _in_processes(count: int, code: str) -> list[subprocess.Popen[bytes]]:
    """`count` interpreters started at once, each running `code` from the repository root."""
    root = Path(__file__).resolve().parents[3]
    return [subprocess.Popen([sys.executable, "-c", code], cwd=root) for _ in range(count)]


def test_builds_running_at_once_each_leave_a_whole_bundle(tmp_path: Path) -> None:
    """Two stacks coming up together (two terminals, parallel test workers) build the same zip."""
    output = tmp_path / "processor.zip"
    expected = build(tmp_path / "alone.zip").read_bytes()
    code = f"from pathlib import Path; from testbed.lifecycle.build import build; build(Path({str(output)!r}))"
    for _ in range(3):
        assert [p.wait(timeout=120) for p in _in_processes(4, code)] == [0, 0, 0, 0]
        assert output.read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone.zip", "processor.zip"], "no partial file is left"


def test_cli_configs_written_at_once_are_whole(tmp_path: Path) -> None:
    provider = tmp_path / "mirror" / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0" / "linux_amd64"
    provider.mkdir(parents=True)
    for index in range(200):
        (provider / f"file-{index}").write_text(str(index))
    state = tmp_path / "state"
    code = (
        "import os; from pathlib import Path; from testbed.lifecycle import terraform; "
        f"os.environ['TESTBED_TF_MIRROR'] = {str(tmp_path / 'mirror')!r}; "
        f"assert 'filesystem_mirror' in terraform.write_cli_config(Path({str(state)!r})).read_text()"
    )
    assert [p.wait(timeout=60) for p in _in_processes(4, code)] == [0, 0, 0, 0]
    linked = state / "provider-mirror/registry.opentofu.org/hashicorp/aws/5.100.0/linux_amd64"
    assert sorted(p.name for p in linked.iterdir()) == sorted(f"file-{i}" for i in range(200))
    assert sorted(p.name for p in state.iterdir()) == ["provider-mirror", "terraformrc"]


def test_cli_config_uses_a_filesystem_mirror_where_one_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = tmp_path / "mirror" / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0" / "linux_amd64"
    provider.mkdir(parents=True)
    (provider / "terraform-provider-aws").write_text("binary")
    monkeypatch.setenv("TESTBED_TF_MIRROR", str(tmp_path / "mirror"))
    (provider / "LICENSE.txt").write_text("license")
    text = terraform.write_cli_config(tmp_path / "state").read_text()
    assert terraform.write_cli_config(tmp_path / "state").read_text() == text, "a second write changes nothing"
    assert "filesystem_mirror" in text and "registry.opentofu.org/hashicorp/aws" in text
    linked = tmp_path / "state/provider-mirror/registry.opentofu.org/hashicorp/aws/5.100.0/linux_amd64"
    assert (linked / "terraform-provider-aws").read_text() == "binary"
    assert (provider / "LICENSE.txt").read_text() == "license", "the mirror itself is never written to"


def test_cli_config_falls_back_to_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTBED_TF_MIRROR", raising=False)
    monkeypatch.setattr(terraform, "MIRROR_GLOBS", ())
    text = terraform.write_cli_config(tmp_path).read_text()
    assert "filesystem_mirror" not in text and "direct {}" in text


def test_a_port_in_use_is_an_error_that_names_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        backend = EmbeddedBackend(ministack_port=port, mqtt_port=free_port(), state_dir=tmp_path)
        with pytest.raises(PortInUseError, match=rf"port {port} .*MINISTACK_PORT"):
            backend.start()
    assert backend.ministack.pid() is None


def test_a_start_that_fails_halfway_stops_what_it_started_and_a_second_stop_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker's port is busy: the emulator this start brought up is stopped again, and stopping
    the stack afterwards says nothing was running rather than announcing a stop that never ends."""
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        backend = EmbeddedBackend(
            ministack_port=free_port(), mqtt_port=port, iot_mqtt_port=free_port(), state_dir=tmp_path
        )
        with (
            caplog.at_level(logging.INFO, logger="testbed"),
            pytest.raises(PortInUseError, match=rf"port {port} .*MQTT_PORT"),
        ):
            backend.start()
    assert backend.ministack.pid() is None and not port_in_use(backend.ministack_port)
    assert "the start failed: stopped what it had started (ministack)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="testbed"):
        backend.stop()
        backend.stop()
    assert caplog.text.count("nothing of this stack was running") == 2 and "stopping the emulator" not in caplog.text


def test_an_up_that_fails_past_the_start_names_what_still_runs_and_how_to_stop_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    infra = tmp_path / "infra"
    infra.mkdir()
    (infra / "main.tf").write_text('resource "aws_sqs_queue" "broken" {\n  name = \n}\n')
    backend = EmbeddedBackend(
        ministack_port=free_port(), mqtt_port=free_port(), iot_mqtt_port=free_port(), state_dir=tmp_path / "state"
    )
    stack = Stack(backend, infra=Infrastructure(infra, {}))
    try:
        with caplog.at_level(logging.INFO, logger="testbed"), pytest.raises(terraform.TerraformError):
            stack.up()
        emulator, broker = backend.ministack.pid(), backend.mosquitto.pid()
        assert emulator is not None and broker is not None, "left up for a look"
        assert re.search(
            rf"up failed; still running: emulator \(pid {emulator}\).*broker \(pid {broker}\).*--backend embedded down",
            caplog.text,
        )
    finally:
        backend.stop()


def test_stop_ends_only_the_process_it_started(tmp_path: Path) -> None:
    marker = f"testbed-unit-{os.getpid()}"
    process = ManagedProcess("sleeper", tmp_path, marker=marker)
    proc = process.start([sys.executable, "-c", "import time, sys; time.sleep(60)", marker], os.environ)
    assert process.pid() == proc.pid
    assert process.stop(timeout_s=5)
    assert proc.wait(timeout=5) is not None
    process.pid_file.write_text(f"{os.getpid()}\n")  # a PID that is not ours
    assert process.pid() is None
    assert not process.stop(), "a PID without our marker is never signalled"


class RaisingHandler(logging.Handler):
    """Formats every record the way rich's handler does: a bad format string raises to the caller."""

    def handle(self, record: logging.LogRecord) -> bool:
        record.getMessage()
        return True


def test_iot_ingress_starts_again_and_again_with_no_bridge(tmp_path: Path) -> None:
    backend = EmbeddedBackend(state_dir=tmp_path)
    backend.run_dir.mkdir(parents=True)
    outputs = tmp_path / "outputs.json"
    outputs.write_text("{}")
    handler, log = RaisingHandler(), logging.getLogger("testbed")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)  # as the CLI logs
    try:
        for _ in range(2):  # the second start finds the mode and outputs unchanged and no bridge
            backend.start_ingress(outputs, "iot")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert backend.ingress_mode() == "iot" and backend.bridge.pid() is None


def test_a_running_stack_asked_for_other_ports_restarts_its_servers_there(tmp_path: Path) -> None:
    """`MINISTACK_PORT=... make up` while the stack runs elsewhere: the servers move, the state stays."""
    first = EmbeddedBackend(
        ministack_port=free_port(), mqtt_port=free_port(), iot_mqtt_port=free_port(), state_dir=tmp_path
    )
    moved = EmbeddedBackend(
        ministack_port=free_port(), mqtt_port=free_port(), iot_mqtt_port=free_port(), state_dir=tmp_path
    )
    try:
        first.start()
        first.client("sqs").create_queue(QueueName="kept")
        moved.start()
        pid = moved.ministack.pid()
        assert pid is not None and moved.healthy()
        assert {moved.ministack_port, moved.iot_mqtt_port} <= {port for _, port in listening_sockets(pid)}
        assert port_in_use(moved.mqtt_port)
        assert not any(port_in_use(p) for p in (first.ministack_port, first.iot_mqtt_port, first.mqtt_port))
        url = moved.client("sqs").get_queue_url(QueueName="kept")["QueueUrl"]
        assert url == f"http://{LOOPBACK}:{moved.ministack_port}/000000000000/kept"
        moved.start()
        assert moved.ministack.pid() == pid, "started again with the same settings, it is left running"
    finally:
        moved.stop()
        first.stop()


def test_state_made_on_another_emulator_port_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state_port_file(tmp_path).parent.mkdir(parents=True)
    state_port_file(tmp_path).write_text("4566\n")
    with caplog.at_level(logging.INFO, logger="testbed"):
        note_port(tmp_path, 4600)
    assert "made with MINISTACK_PORT=4566: its queues now have URLs on 4600" in caplog.text


def test_a_stopped_emulators_bundle_copies_are_removed_before_it_starts_again(tmp_path: Path) -> None:
    stale = tmp_path / "tmp" / f"{MINISTACK_LAMBDA_COPY_PREFIX}processor-x1"
    stale.mkdir(parents=True)
    (stale / "handler.py").write_text("")
    other = tmp_path / "tmp" / "something-else"
    other.mkdir()
    clean_stale_lambda_copies(tmp_path / "tmp")
    assert not stale.exists() and other.exists()


def test_state_from_before_the_port_was_recorded_is_judged_by_its_queue_urls(tmp_path: Path) -> None:
    queues = tmp_path / "ministack" / "state" / "sqs.json"
    queues.parent.mkdir(parents=True)
    queues.write_text('{"payload": {"url": "http://127.0.0.1:4566/000000000000/ingest"}}')
    assert recorded_port(tmp_path) == "4566"


def test_a_failed_start_records_no_port(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind((LOOPBACK, 0))
    busy.listen()
    try:
        backend = EmbeddedBackend(ministack_port=busy.getsockname()[1], state_dir=tmp_path)
        with pytest.raises(PortInUseError):
            backend.start()
    finally:
        busy.close()
    assert not state_port_file(tmp_path).exists(), "no state was made on a port that never served"


def test_only_queues_and_their_policies_on_an_emulators_former_port_are_moved(tmp_path: Path) -> None:
    def queue(name: str, url: str, index_key: str | None = None) -> dict[str, object]:
        instance: dict[str, object] = {"attributes": {"id": url, "url": url}}
        if index_key is not None:
            instance["index_key"] = index_key
        return {"mode": "managed", "type": "aws_sqs_queue", "name": name, "instances": [instance]}

    state = {
        "resources": [
            queue("ingest", "http://127.0.0.1:4566/000000000000/ingest"),
            queue("tap", "http://localhost:4566/000000000000/ops-tap", index_key="ops"),
            queue("dlq", "http://127.0.0.1:4600/000000000000/dlq"),
            queue("aws", "https://sqs.eu-west-1.amazonaws.com/123456789012/ingest"),
            {"mode": "data", "type": "aws_sqs_queue", "name": "read", "instances": []},
            {
                "mode": "managed",
                "type": "aws_sqs_queue_policy",
                "name": "tap",
                "instances": [
                    {
                        "index_key": "ops",
                        "attributes": {
                            "id": "http://localhost:4566/000000000000/ops-tap",
                            "queue_url": "http://localhost:4566/000000000000/ops-tap",
                        },
                    }
                ],
            },
        ]
    }
    (tmp_path / "terraform.tfstate").write_text(json.dumps(state))
    stack = terraform.Terraform(work_dir=tmp_path, variables={}, env={})
    assert stack.moved_queues("http://127.0.0.1:4600") == {
        "aws_sqs_queue.ingest": "http://127.0.0.1:4600/000000000000/ingest",
        'aws_sqs_queue.tap["ops"]': "http://127.0.0.1:4600/000000000000/ops-tap",
        'aws_sqs_queue_policy.tap["ops"]': "http://127.0.0.1:4600/000000000000/ops-tap",
    }
    assert terraform.Terraform(work_dir=tmp_path / "none", variables={}, env={}).moved_queues("http://x:1") == {}


def test_load_is_refused_by_name_on_a_backend_without_a_simulator_container(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--backend", "embedded", "load"]) == 1
    assert "`load` runs the simulator container of a compose backend; on embedded" in capsys.readouterr().out


def test_a_backend_without_a_local_bridge_or_emulator_reports_nothing_rather_than_guessing(tmp_path: Path) -> None:
    backend = EmbeddedBackend(state_dir=tmp_path)  # nothing started
    assert backend.ingress_counters() == {} and backend.emulator_rss_mb() is None
    backend.run_dir.mkdir(parents=True)
    backend.bridge_metrics_file.write_text('{"forwarded": 3}')
    assert backend.ingress_counters() == {"forwarded": 3}


def test_each_ingress_mode_says_how_devices_connect_and_a_corrupt_mode_file_is_named(tmp_path: Path) -> None:
    backend = EmbeddedBackend(state_dir=tmp_path)
    assert backend.ingress.mode == "direct", "no mode file: the default"
    backend.run_dir.mkdir(parents=True)
    (backend.run_dir / "ingress-mode").write_text("iot")
    assert backend.ingress.on_iot_core and backend.fault_targets() == ("emulator",)
    (backend.run_dir / "ingress-mode").write_text("sqs")
    assert not backend.ingress.on_iot_core and backend.fault_targets() == ("broker", "bridge", "emulator")
    (backend.run_dir / "ingress-mode").write_text("\x00garbage")
    with pytest.raises(BackendError, match="names no ingress mode"):
        backend.mqtt_target()


def test_terraform_output_goes_to_its_log_behind_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    infra = tmp_path / "infra"
    infra.mkdir()
    (infra / "main.tf").write_text('output "x" {\n  value = "one"\n}\n')
    tf = terraform.Terraform(work_dir=tmp_path / "work", variables={}, env={}, infra_dir=infra)
    with caplog.at_level(logging.INFO, logger="testbed"):
        tf.run("apply", "-auto-approve", "-input=false", "-no-color")
    assert [r.getMessage() for r in caplog.records] == [f"terraform apply ... (output: {tf.log_file}; -v streams it)"]
    assert "Apply complete!" in tf.log_file.read_text()
    (infra / "main.tf").write_text('output "x" {\n  value = \n}\n')
    with pytest.raises(terraform.TerraformError, match=r"(?s)the end of .*terraform\.log.*Invalid expression"):
        tf.run("apply", "-auto-approve", "-input=false", "-no-color")


def test_terraform_output_streams_when_verbose(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    infra = tmp_path / "infra"
    infra.mkdir()
    (infra / "main.tf").write_text('output "x" {\n  value = "one"\n}\n')
    tf = terraform.Terraform(work_dir=tmp_path / "work", variables={}, env={}, infra_dir=infra)
    log = logging.getLogger("testbed")
    level = log.level
    log.setLevel(logging.DEBUG)
    try:
        tf.run("apply", "-auto-approve", "-input=false", "-no-color")
    finally:
        log.setLevel(level)
    assert "Apply complete!" in capfd.readouterr().out
    assert not tf.log_file.exists()


def test_the_external_backend_names_a_missing_or_silent_emulator_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(BackendError, match=r"AWS_ENDPOINT_URL, which must be an http\(s\) URL"):
        ExternalBackend.from_env()
    silent = ExternalBackend(endpoint=f"http://{LOOPBACK}:{free_port()}", mqtt_port=free_port(), state_dir=tmp_path)
    with pytest.raises(BackendError, match=r"no emulator answers at .*BACKEND=external starts none"):
        silent.start()
    assert silent.mosquitto.pid() is None and not port_in_use(silent.mqtt_port), "nothing was started"
    with pytest.raises(BackendError, match="INGRESS=iot is not available on BACKEND=external"):
        silent.check_ingress("iot")
    assert silent.fault_targets() == ("broker", "bridge"), "the emulator is not ours to hit"
    assert [part.name for part in silent.components()] == ["emulator", "broker", "rule bridge"]


def test_terraform_against_an_endpoint_that_never_answers_is_stopped_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An emulator that accepts a call and never answers held `terraform apply` for ever (the
    provider sets no response timeout): the command is interrupted at its limit and says so."""
    infra = tmp_path / "infra"
    infra.mkdir()
    (infra / "main.tf").write_text(
        'terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws" }\n  }\n}\n'
        'provider "aws" {\n  region = "us-east-1"\n  skip_credentials_validation = true\n'
        "  skip_requesting_account_id = true\n  skip_metadata_api_check = true\n}\n"
        'data "aws_sqs_queue" "q" {\n  name = "never-answered"\n}\n'
    )
    with socket.socket() as silent:  # listens, is connected to, and never says a word
        silent.bind((LOOPBACK, 0))
        silent.listen(16)
        env = {
            "AWS_ENDPOINT_URL": f"http://{LOOPBACK}:{silent.getsockname()[1]}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }
        tf = terraform.Terraform(work_dir=tmp_path / "work", variables={}, env=env, infra_dir=infra)
        tf.init()
        monkeypatch.setenv(terraform.TIMEOUT_VARIABLE, "5")
        with pytest.raises(
            terraform.TerraformError, match=r"(?s)ran past 5 s and was stopped.*TESTBED_TERRAFORM_TIMEOUT_S"
        ):
            tf.run("apply", "-auto-approve", "-input=false", "-no-color")
    assert "Interrupt received" in tf.log_file.read_text()


@pytest.mark.parametrize("value", ["0", "-3", "soon", "inf", "nan"])
def test_a_terraform_timeout_that_is_not_a_positive_number_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(terraform.TIMEOUT_VARIABLE, value)
    with pytest.raises(TestbedError, match="give a number of seconds above 0"):
        terraform.command_timeout()


def test_a_stopped_commands_error_names_the_resources_it_was_still_waiting_on() -> None:
    said = (
        "aws_sqs_queue.ingest: Creating...\n"
        "aws_sqs_queue.ingest: Still creating... [10s elapsed]\n"
        "aws_lambda_function.processor: Still creating... [9m50s elapsed]\n"
        "aws_sqs_queue.ingest: Creation complete after 25s [id=x]\n"
        "aws_s3_bucket.archive: Still destroying... [1m0s elapsed]\n"
    )
    assert terraform.still_waiting(said) == (
        "still waiting on aws_lambda_function.processor (creating, 9m50s), aws_s3_bucket.archive (destroying, 1m0s)"
    )
    assert terraform.still_waiting("Plan: 3 to add\n") == "with no resource in progress"
    replaced = (
        "aws_sqs_queue.ingest: Destroying... [id=x]\n"
        "aws_sqs_queue.ingest: Destruction complete after 1s\n"
        "aws_sqs_queue.ingest: Creating...\n"
        "aws_sqs_queue.ingest: Still creating... [10s elapsed]\n"
    )
    assert terraform.still_waiting(replaced) == "still waiting on aws_sqs_queue.ingest (creating, 10s)"
    assert terraform.still_waiting("aws_iam_role.r: Creating...\n") == "still waiting on aws_iam_role.r (creating)"
