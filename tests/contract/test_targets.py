"""The targets beyond the embedded default, checked without Docker and without an AWS account."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from simulator.fleet import parse_fleet
from simulator.limits import IOT_CORE_PUBLISHES_PER_CONNECTION_S, LimitError, check_iot_core_limits, peak_rates
from simulator.schedule import Burst, Constant
from testbed.lifecycle.backends import AwsBackend, BackendError
from testbed.lifecycle.backends.aws import BACKEND_OVERRIDE, check_state_bucket, read_backend_config
from testbed.lifecycle.terraform import Terraform
from testbed.paths import INFRA_DIR, ROOT
from tests.docs import manual_text

README = manual_text()


def dry_run(backend: str, *command: str, state: Path) -> list[str]:
    env = {**os.environ, "DRY_RUN": "1", "COMPOSE_STATE_DIR": str(state), "LOCALSTACK_RUNNER": "docker"}
    proc = subprocess.run(
        [sys.executable, "-m", "testbed", "--backend", backend, *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.splitlines()


@pytest.mark.parametrize("backend", ["localstack", "ministack-docker"])
def test_the_docker_commands_of_up_load_and_down_are_the_ones_the_readme_gives(backend: str, tmp_path: Path) -> None:
    up = dry_run(backend, "up", state=tmp_path)
    profile = "localstack" if backend == "localstack" else "ministack"
    compose = f"docker compose -f docker-compose.yml --profile {profile}"
    assert up[0] == f"{compose} up -d --wait {profile}"
    assert up[1].startswith("terraform -chdir=infra apply")
    variables = json.loads(up[1].split("with variables ", 1)[1])
    assert variables["enable_iot_rule"] is (backend != "localstack"), "LocalStack's free edition has no IoT Core"
    assert up[2] == f"{compose} up -d --wait --build mosquitto bridge"
    assert (tmp_path / "broker" / "mosquitto.conf").read_text().startswith("listener 1883\n"), "container listener"
    load = dry_run(backend, "load", "--duration", "5", state=tmp_path)
    assert load == [f"{compose} kill -s SIGHUP mosquitto", f"{compose} --profile simulator run --rm --build simulator"]
    down = dry_run(backend, "down", state=tmp_path)
    assert down == [f"{compose} --profile simulator down --volumes --remove-orphans"]
    for line in (up[0], up[2], *load, *down):
        assert line in README, f"README shows `{line}`"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("up BACKEND=localstack", "python -m testbed --backend localstack up"),
        ("down BACKEND=localstack", "python -m testbed --backend localstack down"),
        ("up BACKEND=ministack-docker", "python -m testbed --backend ministack-docker up"),
        ("load BACKEND=localstack", "python -m testbed --backend localstack load --fleet simulator/fleets/smoke.yaml"),
        (
            "deploy TARGET=aws ENV=dev BACKEND_CONFIG=backend.s3.hcl",
            "ENV=dev BACKEND_CONFIG=backend.s3.hcl .venv/bin/python -m testbed --backend aws up",
        ),
        ("destroy TARGET=aws ENV=dev", "python -m testbed --backend aws destroy"),
        # three workers as a host process (each its own LocalStack), one compose stack under Docker
        ("test BACKEND=localstack", "BACKEND=localstack .venv/bin/python -m pytest -n "),
        (
            "test",
            "LOCALSTACK_RUNNER=host BACKEND=localstack .venv/bin/python -m pytest -n 3 --dist worksteal tests/e2e",
        ),
    ],
)
def test_make_runs_what_the_readme_says(target: str, expected: str) -> None:
    shown = subprocess.run(["make", "-n", *target.split()], cwd=ROOT, capture_output=True, text=True, check=True)
    assert expected in shown.stdout
    assert f"make {target}" in README, f"README documents `make {target}`"


def test_deploy_and_destroy_refuse_to_run_without_target_aws() -> None:
    shown = subprocess.run(["make", "-n", "deploy"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert 'test "" = aws' in shown and "exit 2" in shown


def test_a_missing_backend_config_or_bucket_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"backend config .*nope\.hcl does not exist"):
        read_backend_config(tmp_path / "nope.hcl")
    config = tmp_path / "backend.s3.hcl"
    config.write_text('key = "iot/terraform.tfstate"\nregion = "eu-west-1"\n')
    with pytest.raises(BackendError, match="does not set bucket"):
        read_backend_config(config)
    config.write_text('bucket = "my-state"\nkey = "iot/terraform.tfstate"\nuse_lockfile = true\n')
    assert read_backend_config(config) == {"bucket": "my-state", "key": "iot/terraform.tfstate"}


def test_a_forbidden_state_bucket_is_named(tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
        with pytest.raises(BackendError, match=r"'team-state' \(from .*backend.s3.hcl\) is forbidden"):
            check_state_bucket(s3, "team-state", tmp_path / "backend.s3.hcl")


def test_the_aws_copy_of_infra_has_the_s3_backend_and_validates(tmp_path: Path) -> None:
    """`terraform init -backend=false` + `validate`: no credentials, no bucket, same HCL as every target."""
    backend = AwsBackend(environment="ci", state_dir=tmp_path / "aws-ci", backend_config_file=tmp_path / "b.hcl")
    infra, backend_config = backend.terraform_setup(tmp_path / "work", INFRA_DIR)
    assert backend_config == [str(tmp_path / "b.hcl")]
    assert (infra / "backend_override.tf").read_text() == BACKEND_OVERRIDE
    linked = {p.name for p in infra.glob("*.tf") if p.is_symlink()}
    assert linked == {p.name for p in INFRA_DIR.glob("*.tf") if p.name != "backend_override.tf"}
    variables = backend.terraform_variables(tmp_path / "processor.zip")
    assert variables["emulator"] is False and variables["enable_iot_rule"] is True
    assert variables["environment_suffix"] == "ci"
    assert "AWS_ENDPOINT_URL" not in backend.client_env(), "no endpoint override on AWS"
    terraform = Terraform(tmp_path / "work", variables, env={}, infra_dir=infra, backend_config=backend_config)
    terraform.run("init", "-backend=false", "-input=false", "-no-color", capture=True)
    validated = json.loads(terraform.run("validate", "-json", "-no-color", capture=True).stdout)
    assert validated["valid"] and validated["warning_count"] == 0, validated


def test_iot_core_quotas_refuse_a_fleet_that_would_be_throttled() -> None:
    fleet = parse_fleet({"devices": [{"type": "power_meter", "count": 10, "interval_s": 0.05}]})
    assert peak_rates(fleet, Constant()) == (20.0, 200.0)
    check_iot_core_limits(fleet, Constant())
    with pytest.raises(LimitError, match="100 publishes/s per connection"):
        check_iot_core_limits(fleet, Burst(factor=6))
    many = parse_fleet({"devices": [{"type": "power_meter", "count": 30_000, "interval_s": 1.0}]})
    with pytest.raises(LimitError, match="account's inbound limit of 20,000"):
        check_iot_core_limits(many, Constant())
    check_iot_core_limits(many, Constant(), account_limit=50_000)
    assert IOT_CORE_PUBLISHES_PER_CONNECTION_S == 100
