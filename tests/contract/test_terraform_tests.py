"""`terraform test` on infra/ with a mocked AWS provider: the AWS target's settings, no account.

Each run works on a copy of infra/ (Terraform writes its lock file into the module), and each
deliberate mistake below must make the suite fail with the assertion that names it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from telemetry.outputs import StackOutputs
from testbed.lifecycle.terraform import terraform_binary, write_cli_config
from testbed.paths import INFRA_DIR, LAMBDA_ZIP

SUITE = INFRA_DIR / "tests" / "aws_target.tftest.hcl"


@dataclass(frozen=True)
class Initialised:
    """infra/'s providers installed once (TF_DATA_DIR and the lock file), shared by every copy."""

    env: dict[str, str]
    lock_file: Path


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Initialised:
    root = tmp_path_factory.mktemp("tf-init")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},  # the mock needs no credentials
        "TF_CLI_CONFIG_FILE": str(write_cli_config()),
        "TF_DATA_DIR": str(root / ".terraform"),
        "TF_IN_AUTOMATION": "1",
    }
    infra = copy_infra(root)
    init = subprocess.run(
        [terraform_binary(), f"-chdir={infra}", "init", "-backend=false", "-input=false", "-no-color"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return Initialised(env, infra / ".terraform.lock.hcl")


# Terraform 1.11's mock providers cannot open an ephemeral resource ("No ephemeral resource types in
# mock providers", hashicorp/terraform#38608, supported in later releases): the copy writes a fixed
# key through the same write-only argument instead of the ephemeral random password.
EPHEMERAL_KEY = re.compile(r'ephemeral "aws_secretsmanager_random_password" "signing_key" \{.*?\n\}\n', re.DOTALL)
EPHEMERAL_VALUE = "ephemeral.aws_secretsmanager_random_password.signing_key.random_password"


def copy_infra(root: Path) -> Path:
    """infra/ and the bundle beside it, as `lambda_zip_path = "../build/processor.zip"` expects."""
    infra = root / "infra"
    shutil.copytree(INFRA_DIR, infra, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    secrets = infra / "secrets.tf"
    text, removed = EPHEMERAL_KEY.subn("", secrets.read_text())
    assert removed == 1 and EPHEMERAL_VALUE in text, "secrets.tf changed: update the test"
    secrets.write_text(text.replace(EPHEMERAL_VALUE, '"a-fixed-key-for-the-mock"'))
    (root / "build").mkdir(exist_ok=True)
    shutil.copy(LAMBDA_ZIP, root / "build" / LAMBDA_ZIP.name)
    return infra


def terraform_test(
    initialised: Initialised, tmp_path: Path, edit: tuple[str, str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The suite on a copy of infra/, with `edit` (file, text, replacement) made to it first."""
    infra = copy_infra(tmp_path)
    shutil.copy(initialised.lock_file, infra)
    if edit is not None:
        name, old, new = edit
        text = (infra / name).read_text()
        assert old in text, f"{name} no longer holds {old!r}: update the test"
        (infra / name).write_text(text.replace(old, new, 1))
    return subprocess.run(
        [terraform_binary(), f"-chdir={infra}", "test", "-no-color"],
        env=initialised.env,
        capture_output=True,
        text=True,
    )


def test_the_aws_target_passes_with_no_account(initialised: Initialised, tmp_path: Path) -> None:
    result = terraform_test(initialised, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'run "aws_target"... pass' in result.stdout and "1 passed, 0 failed" in result.stdout


MISTAKES = {
    "a reserved Lambda environment key": (
        "processor.tf",
        "    POWERTOOLS_LOG_LEVEL = var.processor_log_level\n",
        "    POWERTOOLS_LOG_LEVEL = var.processor_log_level\n    AWS_REGION = var.region\n",
        "sets a key Lambda reserves",
    ),
    "a log group without the KMS key": (
        "processor.tf",
        "  kms_key_id        = aws_kms_key.main.arn\n",
        "",
        "not encrypted with the stack's KMS key",
    ),
    "a bucket that can be made public": (
        "s3.tf",
        "restrict_public_buckets = true",
        "restrict_public_buckets = false",
        "the archive bucket can be made public",
    ),
    "a bucket that takes plain HTTP": (
        "s3.tf",
        'values   = ["false"]',
        'values   = ["true"]',
        "does not deny requests without TLS",
    ),
    "a signing key kept in the state": (
        "secrets.tf",
        '  secret_string_wo         = "a-fixed-key-for-the-mock"\n'
        "  secret_string_wo_version = var.signing_key_version\n",
        '  secret_string            = "a-fixed-key-for-the-mock"\n',
        "would be written to the Terraform state",
    ),
    "a name without the suffix": (
        "dynamodb.tf",
        '"${local.name}-telemetry"',
        '"telemetry"',
        "lacks the environment suffix",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_aws_would_reject_fails_the_suite(mistake: str, initialised: Initialised, tmp_path: Path) -> None:
    name, old, new, message = MISTAKES[mistake]
    result = terraform_test(initialised, tmp_path, (name, old, new))
    assert result.returncode != 0, f"the suite passed with {mistake}"
    assert message in " ".join(result.stdout.split() + result.stderr.split()), result.stdout + result.stderr


def test_the_suite_checks_every_output_the_tools_read() -> None:
    checked = set(re.findall(r"output\.([a-z_]+)", SUITE.read_text()))
    assert {f.name for f in dataclasses.fields(StackOutputs)} <= checked
