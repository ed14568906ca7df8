"""The AWS target's settings, checked against the emulator's APIs (no AWS account here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from testbed.lifecycle.backends import AwsBackend, BackendError
from testbed.lifecycle.backends.aws import check_state_bucket
from testbed.lifecycle.stack import Stack
from testbed.lifecycle.terraform import Terraform
from testbed.paths import LAMBDA_ZIP
from tests.e2e.conftest import needs_iot_core

pytestmark = pytest.mark.e2e


def test_infra_with_the_aws_settings_plans_against_the_emulator(stack: Stack, tmp_path: Path) -> None:
    """emulator=false (account lookups and credential checks on), the IoT rule on, a new environment."""
    variables = AwsBackend(environment="awsplan").terraform_variables(LAMBDA_ZIP)
    assert variables["emulator"] is False and variables["enable_iot_rule"] is True
    terraform = Terraform(tmp_path / "terraform", variables, env=stack.backend.client_env())
    terraform.init()
    planned = terraform.changed_resources()
    assert all(actions == ["create"] for actions in planned.values())
    assert "aws_iot_topic_rule.telemetry[0]" in planned
    assert "aws_lambda_function.processor" in planned
    deployed = {
        a for a in stack.terraform.run("state", "list", capture=True).stdout.split() if not a.startswith("data.")
    }
    # the TLS-only bucket policy, which an emulator's plain HTTP cannot satisfy, and the IoT rule's parts
    # where the emulator has no IoT Core (LocalStack's free edition: the rule bridge carries the rule)
    rule = {"aws_iot_topic_rule.telemetry[0]", "aws_iam_role.iot[0]", "aws_iam_role_policy.iot[0]"}
    without_rule = not stack.backend.terraform_variables(LAMBDA_ZIP).get("enable_iot_rule", True)
    assert set(planned) - deployed == {"aws_s3_bucket_policy.archive[0]"} | (rule if without_rule else set())
    assert deployed <= set(planned), "the same resources otherwise"


def test_a_missing_state_bucket_is_named_and_an_existing_one_passes(stack: Stack, tmp_path: Path) -> None:
    s3 = stack.client("s3")
    config = tmp_path / "backend.s3.hcl"
    with pytest.raises(
        BackendError, match=r"state bucket 'tfstate-missing' \(from .*backend\.s3\.hcl\) does not exist"
    ):
        check_state_bucket(s3, "tfstate-missing", config)
    s3.create_bucket(Bucket="tfstate-present")
    check_state_bucket(s3, "tfstate-present", config)


def test_the_aws_target_checks_its_state_bucket_and_plans_with_the_s3_backend(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make deploy TARGET=aws` up to the plan, with the emulator standing in for AWS through AWS_ENDPOINT_URL.

    The testbed itself sets no endpoint for AWS; the SDK and Terraform read this one from the environment,
    as a user's would. The backend config adds what S3 on an emulator needs (path-style, its endpoint).
    """
    for name, value in stack.backend.client_env().items():
        monkeypatch.setenv(name, value)
    stack.client("s3").create_bucket(Bucket="tfstate-e2e")
    endpoint = stack.backend.endpoint_url()
    config = tmp_path / "backend.s3.hcl"
    config.write_text(
        'bucket = "tfstate-e2e"\nkey = "iot-pipeline/e2e.tfstate"\nregion = "us-east-1"\nuse_lockfile = true\n'
        f'use_path_style = true\nskip_credentials_validation = true\nendpoints = {{ s3 = "{endpoint}" }}\n'
    )
    backend = AwsBackend(environment="awse2e", backend_config_file=config, state_dir=tmp_path / "aws-awse2e")
    backend.start()
    aws = Stack(backend)
    aws.terraform.init()
    plan = aws.terraform.plan_changes()
    assert plan is not None and "aws_iot_topic_rule.telemetry[0] will be created" in plan
    assert "iot-pipeline-awse2e-processor" in plan

    missing = tmp_path / "missing.s3.hcl"
    missing.write_text('bucket = "tfstate-nowhere"\nkey = "x.tfstate"\n')
    with pytest.raises(BackendError, match=r"'tfstate-nowhere'.*does not exist"):
        AwsBackend(environment="awse2e", backend_config_file=missing, state_dir=tmp_path / "other").start()


def test_destroy_removes_the_provisioned_things_and_every_resource(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make destroy TARGET=aws`'s path: S3 state, things with certificates, then terraform destroy.

    Applied with emulator=true (path-style S3 on the emulator); the AWS settings are planned above.
    """
    needs_iot_core(stack)
    for name, value in stack.backend.client_env().items():
        monkeypatch.setenv(name, value)
    stack.client("s3").create_bucket(Bucket="tfstate-destroy")
    config = tmp_path / "backend.s3.hcl"
    config.write_text(
        'bucket = "tfstate-destroy"\nkey = "iot-pipeline/awsdestroy.tfstate"\nregion = "us-east-1"\n'
        f"use_path_style = true\nskip_credentials_validation = true\n"
        f'endpoints = {{ s3 = "{stack.backend.endpoint_url()}" }}\n'
    )
    backend = AwsBackend(environment="awsdestroy", backend_config_file=config, state_dir=tmp_path / "aws")
    backend.start()
    aws = Stack(backend, variables={"emulator": True})
    aws.terraform.apply()
    state = stack.client("s3").get_object(Bucket="tfstate-destroy", Key="iot-pipeline/awsdestroy.tfstate")
    assert '"aws_lambda_function"' in state["Body"].read().decode(), "the state lives in the S3 bucket"
    devices = ["awsdestroy-00000", "awsdestroy-00001"]
    backend.provision_devices(devices)
    iot = stack.client("iot")
    assert all(iot.describe_thing(thingName=d) for d in devices)

    aws.destroy()
    for device in devices:
        with pytest.raises(ClientError):
            iot.describe_thing(thingName=device)
    assert aws.terraform.run("state", "list", capture=True).stdout.split() == []
    functions = stack.client("lambda").list_functions()["Functions"]
    assert not [f for f in functions if "awsdestroy" in f["FunctionName"]]
