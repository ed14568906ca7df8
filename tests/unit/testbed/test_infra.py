"""Which Terraform the testbed deploys (testbed/lifecycle/infra.py): infra/ or a stack of the user's own,
its variables and its outputs under the contract's names."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from telemetry.outputs import OutputsError
from testbed.lifecycle.backends import AwsBackend, EmbeddedBackend
from testbed.lifecycle.backends.base import BackendError
from testbed.lifecycle.infra import InfraError, Infrastructure
from testbed.lifecycle.iot_things import device_policy, ensure_policy
from testbed.lifecycle.stack import Stack
from testbed.paths import INFRA_DIR

TESTBED = {"emulator": True, "enable_iot_rule": False, "region": "us-east-1", "lambda_zip_path": "/b/p.zip"}


@pytest.fixture
def their_stack(tmp_path: Path) -> Path:
    folder = tmp_path / "infra"
    folder.mkdir()
    (folder / "main.tf").write_text(
        'variable "region" {\n  type = string\n}\n\n  variable "function_zip" {}\nvariable "lambda_zip_path" {}\n'
    )
    (folder / "more.tf.json").write_text('{"variable": {"emulator": {"type": "bool"}}}')
    return folder


def test_a_folder_without_terraform_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="is not a folder"):
        Infrastructure(tmp_path / "nowhere")
    (tmp_path / "README.md").write_text("no terraform here")
    with pytest.raises(InfraError, match=r"holds no \.tf file"):
        Infrastructure(tmp_path)


def test_a_malformed_mapping_is_named_with_its_setting(their_stack: Path) -> None:
    with pytest.raises(InfraError, match="TESTBED_OUTPUTS: cannot read 'readings'"):
        Infrastructure.configured(str(their_stack), "readings")


def test_a_json_file_that_is_not_terraform_is_named(their_stack: Path) -> None:
    (their_stack / "broken.tf.json").write_text("[1, 2")
    with pytest.raises(InfraError, match=r"broken\.tf\.json is not a Terraform JSON file"):
        Infrastructure(their_stack).declared_variables()


def test_their_stack_gets_only_the_testbed_variables_it_declares_and_every_one_of_the_users(their_stack: Path) -> None:
    infra = Infrastructure(their_stack)
    assert not infra.shipped
    assert infra.declared_variables() == {"region", "function_zip", "lambda_zip_path", "emulator"}
    user = {"function_zip": "/their/build.zip", "environment_suffix": "pytest-1", "their_typo": 1}
    assert infra.variables(TESTBED, user) == {
        "region": "us-east-1",
        "emulator": True,
        "function_zip": "/their/build.zip",
        "their_typo": 1,  # theirs: Terraform warns of it, the testbed does not hide it
    }, "never this project's bundle, even where the stack has a variable of that name"


def test_infra_gets_every_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTBED_INFRA_DIR", raising=False)
    infra = Infrastructure.from_env()
    assert infra.shipped and infra.folder == INFRA_DIR
    assert infra.variables(TESTBED, {"region": "eu-west-1"}) == {**TESTBED, "region": "eu-west-1"}


def test_outputs_take_the_contracts_names_and_the_backends_region_unless_the_stack_gives_one(their_stack: Path) -> None:
    raw = {"queue": {"value": "http://q"}, "where": {"value": "eu-north-1"}}
    infra = Infrastructure.configured(str(their_stack), "ingest_queue_url=queue")
    assert infra.outputs(raw, "us-east-1")["region"] == {"value": "us-east-1"}
    assert infra.outputs(raw, "us-east-1")["ingest_queue_url"] == {"value": "http://q"}
    mapped = Infrastructure.configured(str(their_stack), "region=where")
    assert mapped.outputs(raw, "us-east-1")["region"] == {"value": "eu-north-1"}
    with pytest.raises(OutputsError, match=r"nothing \(for dlq_url\)"):
        Infrastructure.configured(str(their_stack), "dlq_url=nothing").outputs(raw, "us-east-1")


def test_the_aws_copy_follows_the_folder_it_is_made_of(tmp_path: Path, their_stack: Path) -> None:
    backend = AwsBackend(state_dir=tmp_path / "aws", backend_config_file=tmp_path / "b.hcl")
    copy, _ = backend.terraform_setup(tmp_path / "work", INFRA_DIR)
    assert (copy / "outputs.tf").is_symlink()
    copy, _ = backend.terraform_setup(tmp_path / "work", their_stack)
    linked = {p.name: p.resolve() for p in copy.glob("*.tf") if p.is_symlink()}
    assert linked == {"main.tf": (their_stack / "main.tf").resolve()}, "no file of infra/ is left in the copy"
    assert (copy / "backend_override.tf").is_file()


@pytest.mark.parametrize("template", ["greenhouse/climate", "a/{device_id}\ntopic readwrite #"])
def test_a_device_topic_that_could_widen_the_acl_stops_the_backend_by_its_setting(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BackendError, match="TESTBED_DEVICE_TOPIC: device topic"):
        EmbeddedBackend(state_dir=tmp_path, device_topic=template)
    monkeypatch.setenv("TESTBED_DEVICE_TOPIC", template)
    with pytest.raises(BackendError, match="TESTBED_DEVICE_TOPIC"):
        EmbeddedBackend.from_env()


def test_the_things_policy_lets_a_thing_publish_on_its_own_topic_of_the_template() -> None:
    policy = device_policy("eu-west-1", "123456789012", device_topic="greenhouse/{device_id}/climate")
    assert policy["Statement"][1]["Resource"] == (
        "arn:aws:iot:eu-west-1:123456789012:topic/greenhouse/${iot:Connection.Thing.ThingName}/climate"
    )


def test_their_folder_runs_in_a_linked_copy_whose_state_is_local_whatever_backend_it_names(
    tmp_path: Path, their_stack: Path
) -> None:
    (their_stack / "backend.tf").write_text('terraform {\n  backend "s3" {}\n}\n')
    (their_stack / "prod.auto.tfvars").write_text('region = "eu-west-1"\n')
    (their_stack / "modules" / "queue").mkdir(parents=True)
    (their_stack / ".terraform.lock.hcl").write_text("# their lock file, for the registry's provider\n")
    (their_stack / "terraform.tfstate").write_text("{}")
    backend = EmbeddedBackend(state_dir=tmp_path / "embedded")
    assert backend.terraform_setup(tmp_path / "work", INFRA_DIR) == (INFRA_DIR, None), "infra/ runs in place"
    copy, config = backend.terraform_setup(tmp_path / "work", their_stack)
    assert config is None and copy == tmp_path / "embedded" / "infra"
    linked = {p.name for p in copy.iterdir() if p.is_symlink()}
    assert linked == {"main.tf", "more.tf.json", "backend.tf", "prod.auto.tfvars", "modules"}
    assert (copy / "backend_override.tf").read_text() == 'terraform {\n  backend "local" {}\n}\n'
    assert not (their_stack / "backend_override.tf").exists(), "nothing is written into their folder"


def stack_of(tmp_path: Path, folder: Path) -> Stack:
    return Stack(EmbeddedBackend(state_dir=tmp_path / "embedded"), infra=Infrastructure(folder))


def test_a_state_holding_one_folders_stack_refuses_another_folder(tmp_path: Path, their_stack: Path) -> None:
    stack_of(tmp_path, their_stack).claim_state()
    stack_of(tmp_path, their_stack).claim_state()  # the same folder again: fine
    with pytest.raises(InfraError, match=rf"holds the stack deployed from {their_stack}; applying {INFRA_DIR}"):
        stack_of(tmp_path, INFRA_DIR).claim_state()
    stack_of(tmp_path, their_stack).infra_marker.write_text("")  # what destroy leaves
    stack_of(tmp_path, INFRA_DIR).claim_state()


def test_a_state_from_before_folders_were_recorded_is_infras(tmp_path: Path, their_stack: Path) -> None:
    (tmp_path / "embedded" / "terraform").mkdir(parents=True)
    with pytest.raises(InfraError, match=f"deployed from {INFRA_DIR}"):
        stack_of(tmp_path, their_stack).claim_state()


class FakeTerraform:
    def __init__(self, outputs: dict[str, str]) -> None:
        self.text = json.dumps({name: {"value": value} for name, value in outputs.items()})

    def outputs_json(self) -> str:
        return self.text


def test_a_device_topic_the_rule_does_not_read_is_named_before_a_device_publishes(
    tmp_path: Path, their_stack: Path
) -> None:
    names = "ingest_queue_url=q dlq_url=d processor_function_name=f iot_rule_name=r iot_rule_sql=s"
    stack = Stack(
        EmbeddedBackend(state_dir=tmp_path / "embedded", device_topic="greenhouse/{device_id}/climate"),
        infra=Infrastructure.configured(str(their_stack), names),
    )
    outputs = {"q": "http://q", "d": "http://d", "f": "fn", "r": "rule", "s": "SELECT * FROM 'plant/+/climate'"}
    stack.__dict__["terraform"] = FakeTerraform(outputs)
    with pytest.raises(InfraError, match=r"greenhouse/\{device_id\}/climate, which the topic rule's FROM 'plant/"):
        stack.contract_outputs()
    stack.__dict__["terraform"] = FakeTerraform({**outputs, "s": "SELECT * FROM 'greenhouse/#'"})
    assert stack.contract_outputs()["iot_rule_sql"] == {"value": "SELECT * FROM 'greenhouse/#'"}


def test_a_things_policy_follows_a_changed_device_topic_within_iot_cores_five_versions() -> None:
    with mock_aws():
        iot = boto3.client("iot", region_name="us-east-1")
        ensure_policy(iot, "devices", device_policy("us-east-1", "123456789012"))
        ensure_policy(iot, "devices", device_policy("us-east-1", "123456789012"))  # unchanged: no new version
        assert len(iot.list_policy_versions(policyName="devices")["policyVersions"]) == 1
        for n in range(6):
            changed = device_policy("us-east-1", "123456789012", device_topic=f"site{n}/{{device_id}}/climate")
            ensure_policy(iot, "devices", changed)
            assert json.loads(iot.get_policy(policyName="devices")["policyDocument"]) == changed
        assert len(iot.list_policy_versions(policyName="devices")["policyVersions"]) == 5
