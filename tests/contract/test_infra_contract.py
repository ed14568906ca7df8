"""Failures of an earlier CDKTF version of this stack that must not come back, one test each."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from processor.config import ENVIRONMENT_KEYS, LIBRARY_ENVIRONMENT_KEYS
from telemetry.outputs import StackOutputs
from telemetry.schema import DEVICE_TYPES
from telemetry.topics import DEVICE_ID_LEVEL, TELEMETRY_FILTER, telemetry_topic
from testbed.parity.probes import LAMBDA_RESERVED_ENV_KEYS as LAMBDA_RESERVED_KEYS
from testbed.paths import ROOT
from tests.contract.conftest import blocks, locals_
from tests.contract.services import services_in_docs, services_in_infra

RESERVED_PREFIXES = ("AWS_LAMBDA_",)
SKIPPED_DIRS = {
    ".git",
    "build",
    ".testbed",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "reports",
}
TEXT_SUFFIXES = {".py", ".tf", ".md", ".yml", ".yaml", ".toml", ".txt", ".json", ".cfg", ".hcl", ""}


def project_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIPPED_DIRS or part.startswith(".venv") for part in rel.parts):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in ("Makefile", "run")):
            files.append(path)
    return files


def test_no_timeseries_database_of_the_old_stack_anywhere() -> None:
    banned = "time" + "stream"  # spelled apart so this file does not match itself
    offenders = [str(p.relative_to(ROOT)) for p in project_files() if banned in p.read_text(errors="ignore").lower()]
    assert offenders == []


def lambda_environment() -> dict[str, str]:
    (function,) = [body for type_, _, body in blocks("resource") if type_ == "aws_lambda_function"]
    variables = function["environment"][0]["variables"]
    assert variables == "${merge(local.processor_environment, local.functions_endpoint)}", "one local map (+ a test's)"
    return dict(locals_()["processor_environment"])


def test_only_an_emulators_fault_proxy_adds_to_the_lambda_environment() -> None:
    """AWS_ENDPOINT_URL, set only when `functions_endpoint_url` is (never on AWS: its default is empty)."""
    override = locals_()["functions_endpoint"]
    assert override == '${var.functions_endpoint_url == "" ? {} : {AWS_ENDPOINT_URL = var.functions_endpoint_url}}'
    (variable,) = [body for _, name, body in blocks("variable") if name == "functions_endpoint_url"]
    assert variable["default"] == ""


def test_lambda_environment_is_exactly_what_the_processor_reads() -> None:
    assert set(lambda_environment()) == set(ENVIRONMENT_KEYS) | set(LIBRARY_ENVIRONMENT_KEYS)
    source = "\n".join(p.read_text() for p in (ROOT / "processor").glob("*.py"))
    read = set(re.findall(r'env(?:iron)?(?:\.get\(|\[)"([A-Z][A-Z0-9_]+)"', source))
    assert read == set(ENVIRONMENT_KEYS), "config.py reads exactly ENVIRONMENT_KEYS, nothing else does"


def test_lambda_environment_has_no_reserved_keys() -> None:
    for key in lambda_environment():
        assert key not in LAMBDA_RESERVED_KEYS and not key.startswith(RESERVED_PREFIXES), key


def test_lambda_environment_values_come_from_resources_or_variables() -> None:
    for key, value in lambda_environment().items():
        assert re.fullmatch(r"\$\{.*\b(aws_[a-z0-9_]+\.[a-z0-9_]+|var\.[a-z0-9_]+)\b.*\}", value), (key, value)
    names = {k: v for k, v in lambda_environment().items() if k.endswith(("_TABLE", "_STREAM", "_BUCKET", "_ARN"))}
    assert all("aws_" in v for v in names.values()), "names and ARNs come from resources, never from literals"


def test_every_output_the_tools_read_is_declared() -> None:
    declared = {name for _, name, _ in blocks("output")}
    read = {field.name for field in dataclasses.fields(StackOutputs)}
    assert read <= declared, f"read but not declared: {read - declared}"
    assert declared <= read, f"declared but not in the outputs contract: {declared - read}"


def test_dynamodb_tables_use_the_project_kms_key() -> None:
    tables = [body for type_, _, body in blocks("resource") if type_ == "aws_dynamodb_table"]
    assert tables
    for table in tables:
        (sse,) = table["server_side_encryption"]
        assert sse == {"enabled": True, "kms_key_arn": "${aws_kms_key.main.arn}"}
        assert table["point_in_time_recovery"] == [{"enabled": True}]


def policy_statements() -> list[dict[str, object]]:
    return [s for type_, _, body in blocks("data") if type_ == "aws_iam_policy_document" for s in body["statement"]]


def test_no_wildcard_action_is_allowed_anywhere() -> None:
    """A Deny may cover every action (the archive bucket's TLS-only rule); an Allow never does."""
    for statement in policy_statements():
        if statement.get("effect") == "Deny":
            continue
        for action in statement["actions"]:  # type: ignore[attr-defined]
            assert "*" not in action, statement


def test_processor_role_resources_are_this_stacks() -> None:
    (processor,) = [
        body for type_, name, body in blocks("data") if (type_, name) == ("aws_iam_policy_document", "processor")
    ]
    for statement in processor["statement"]:
        for resource in statement["resources"]:
            assert resource.startswith("${aws_"), statement


def test_log_group_key_grant_is_scoped_by_encryption_context() -> None:
    (kms,) = [body for type_, name, body in blocks("data") if (type_, name) == ("aws_iam_policy_document", "kms")]
    (logs,) = [s for s in kms["statement"] if s["sid"] == "CloudWatchLogsEncryptLogGroup"]
    assert logs["principals"][0]["identifiers"] == ["logs.${var.region}.amazonaws.com"]
    assert logs["condition"][0]["variable"] == "kms:EncryptionContext:aws:logs:arn"


def test_iot_rule_can_be_switched_off() -> None:
    (rule,) = [body for type_, _, body in blocks("resource") if type_ == "aws_iot_topic_rule"]
    assert rule["count"] == "${var.enable_iot_rule ? 1 : 0}"


def test_no_endpoint_or_per_target_copies_in_infra() -> None:
    text = "\n".join(p.read_text() for p in (ROOT / "infra").glob("*.tf"))
    assert not re.search(r"^\s*endpoints\s*\{", text, re.MULTILINE)
    assert "localhost" not in text and "127.0.0.1" not in text and "4566" not in text


@pytest.mark.parametrize("path", sorted((ROOT / "infra").glob("*.tf")), ids=lambda p: p.name)
def test_every_checkov_suppression_gives_a_reason(path: Path) -> None:
    for line in path.read_text().splitlines():
        if "checkov:skip" in line:
            assert re.search(r"checkov:skip=CKV2?_AWS_\d+:\S.{10,}", line), line


def test_docs_list_exactly_the_services_terraform_creates() -> None:
    assert services_in_docs() == services_in_infra()


def test_git_ignores_local_state() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", ".testbed/x", "build/processor.zip", ".venv/x", "infra/.terraform/x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(ignored) == 4


def test_the_deployed_alert_thresholds_name_known_device_types_and_their_sensors() -> None:
    (thresholds,) = [body["default"] for name, _, body in blocks("variable") if name == "alert_thresholds"]
    assert thresholds and set(thresholds) <= set(DEVICE_TYPES)
    for device_type, rules in thresholds.items():
        assert set(rules) <= set(DEVICE_TYPES[device_type].sensors), device_type


def test_the_topic_rule_reads_the_telemetry_topic_and_its_device_id_level() -> None:
    values = locals_()
    assert values["iot_topic_filter"] == TELEMETRY_FILTER
    assert f"topic({DEVICE_ID_LEVEL}) AS device_id" in values["iot_rule_sql"]
    assert telemetry_topic("dev-1").split("/")[DEVICE_ID_LEVEL - 1] == "dev-1"
