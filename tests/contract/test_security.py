"""Hardening of infra/ and of the repository, checked statically: each test names what it guards."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from testbed.paths import ROOT
from tests.contract.conftest import blocks, load_infra, locals_
from tests.contract.test_infra_contract import project_files


def policy(name: str) -> list[dict[str, Any]]:
    (body,) = [b for type_, n, b in blocks("data") if (type_, n) == ("aws_iam_policy_document", name)]
    return list(body["statement"])


def resource(type_: str, name: str) -> dict[str, Any]:
    (body,) = [b for t, n, b in blocks("resource") if (t, n) == (type_, name)]
    return body


def conditions(statement: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """{variable: (test, values)} of a policy document statement."""
    return {c["variable"]: (c["test"], c["values"]) for c in statement.get("condition", [])}


def test_the_archive_bucket_refuses_requests_without_tls() -> None:
    bucket_policy = resource("aws_s3_bucket_policy", "archive")
    assert bucket_policy["count"] == "${var.emulator ? 0 : 1}", "on AWS always; an emulator serves plain HTTP"
    assert bucket_policy["bucket"] == "${aws_s3_bucket.archive.id}"
    assert bucket_policy["policy"] == "${data.aws_iam_policy_document.archive.json}"
    (deny,) = policy("archive")
    assert deny["effect"] == "Deny" and deny["actions"] == ["s3:*"]
    assert deny["resources"] == ["${aws_s3_bucket.archive.arn}", "${aws_s3_bucket.archive.arn}/*"]
    assert deny["principals"] == [{"type": "*", "identifiers": ["*"]}]
    assert conditions(deny) == {"aws:SecureTransport": ("Bool", ["false"])}


def test_the_key_serves_alarms_only_for_this_accounts_alarms_and_the_ops_topic() -> None:
    (alarms,) = [s for s in policy("kms") if s["sid"] == "AlarmsPublishToEncryptedTopics"]
    assert alarms["principals"] == [{"type": "Service", "identifiers": ["cloudwatch.amazonaws.com"]}]
    arn = "arn:${local.partition}:cloudwatch:${var.region}:${local.account_id}:alarm:${local.name}-*"
    assert conditions(alarms) == {
        "aws:SourceAccount": ("StringEquals", ["${local.account_id}"]),
        "aws:SourceArn": ("ArnLike", [arn]),
        "kms:EncryptionContext:aws:sns:topicArn": ("StringEquals", ["${local.ops_topic_arn}"]),
    }
    for alarm in [b for t, _, b in blocks("resource") if t == "aws_cloudwatch_metric_alarm"]:
        assert alarm["alarm_name"].startswith("${local.name}-"), "the alarm is one the key serves"
        assert alarm["alarm_actions"] == ["${aws_sns_topic.ops.arn}"]


def test_the_key_serves_logs_only_for_the_processors_log_group() -> None:
    (logs,) = [s for s in policy("kms") if s["sid"] == "CloudWatchLogsEncryptLogGroup"]
    arn = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${local.log_group_name}"
    assert conditions(logs) == {"kms:EncryptionContext:aws:logs:arn": ("ArnEquals", [arn])}
    assert resource("aws_cloudwatch_log_group", "processor")["name"] == "${local.log_group_name}"


def test_every_service_principal_in_the_key_policy_is_scoped() -> None:
    for statement in policy("kms"):
        if statement["principals"][0]["type"] == "Service":
            assert conditions(statement), statement["sid"]


def test_the_processor_uses_the_key_only_through_aws_services() -> None:
    (use,) = [s for s in policy("processor") if s["sid"] == "UseProjectKey"]
    test, services = conditions(use)["kms:ViaService"]
    assert test == "StringEquals"
    assert all(re.fullmatch(r"[a-z0-9]+\.\$\{var\.region\}\.amazonaws\.com", s) for s in services), services


# (trust policy, service principal, the ARN it is bound to, the resource using the role, its name local)
TRUSTS = [
    ("lambda_assume", "lambda", "function_arn", ("aws_lambda_function", "processor", "function_name")),
    ("firehose_assume", "firehose", "archive_stream_arn", ("aws_kinesis_firehose_delivery_stream", "archive", "name")),
    ("iot_assume", "iot", "iot_rule_arn", ("aws_iot_topic_rule", "telemetry", "name")),
]


@pytest.mark.parametrize(("document", "service", "arn", "user"), TRUSTS, ids=[t[0] for t in TRUSTS])
def test_a_service_assumes_its_role_only_for_this_stacks_resource(
    document: str, service: str, arn: str, user: tuple[str, str, str]
) -> None:
    (statement,) = policy(document)
    assert statement["principals"] == [{"type": "Service", "identifiers": [f"{service}.amazonaws.com"]}]
    found = conditions(statement)
    account = found.get("aws:SourceAccount") or found.get("sts:ExternalId")
    assert account == ("StringEquals", ["${local.account_id}"]), "bound to this account"
    test, values = found["aws:SourceArn"]
    assert test.startswith("ArnLike") and values == [f"${{local.{arn}}}"], "bound to this stack's resource"
    # The ARN is built from the resource's name (reading it from the resource would be a cycle).
    type_, name, name_attribute = user
    name_local = resource(type_, name)[name_attribute]
    assert re.fullmatch(r"\$\{local\.\w+\}", name_local)
    assert locals_()[arn].startswith("arn:${local.partition}:" + service + ":${var.region}:${local.account_id}:")
    assert locals_()[arn].endswith(name_local)


def test_every_topic_has_a_tap_queue_subscribed_to_it() -> None:
    topics = {f"${{aws_sns_topic.{name}.arn}}" for type_, name, _ in blocks("resource") if type_ == "aws_sns_topic"}
    assert set(locals_()["tapped_topics"].values()) == topics, "alarms (the ops topic) no longer go nowhere"
    for type_ in ("aws_sqs_queue", "aws_sqs_queue_policy", "aws_sns_topic_subscription"):
        assert resource(type_, "tap")["for_each"] == "${local.tapped_topics}"
    subscription = resource("aws_sns_topic_subscription", "tap")
    assert (subscription["topic_arn"], subscription["protocol"]) == ("${each.value}", "sqs")
    (send,) = policy("tap")
    assert send["principals"] == [{"type": "Service", "identifiers": ["sns.amazonaws.com"]}]
    assert conditions(send) == {"aws:SourceArn": ("ArnEquals", ["${each.value}"])}
    outputs = {name: body["value"] for _, name, body in blocks("output")}
    assert outputs["ops_tap_queue_url"] == '${aws_sqs_queue.tap["ops"].id}'
    assert outputs["alerts_tap_queue_url"] == '${aws_sqs_queue.tap["alerts"].id}'


def test_stacks_deployed_before_the_ops_tap_keep_their_alerts_tap() -> None:
    moved = {m["from"]: m["to"] for document in load_infra() for m in document.get("moved", [])}
    for type_ in ("aws_sqs_queue", "aws_sqs_queue_policy", "aws_sns_topic_subscription"):
        assert moved[f"${{{type_}.alerts_tap}}"] == f'${{{type_}.tap["alerts"]}}'


def test_git_ignores_secrets_and_plans() -> None:
    paths = [".env", "infra/.env", "certs/device.pem", "infra/plan.tfplan"]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == paths


# `-P <password>` (mosquitto clients) or `--password <password>` among a command's arguments.
PASSWORD_ARGUMENT = re.compile("|".join(['"-' + 'P"', r"mosquitto_\w+ [^\n]*-" + r"P ", '"--pass' + 'word"']))


def test_no_password_on_a_command_line() -> None:
    """Any user on the machine reads another's command lines (`ps`): passwords go in private files."""
    offenders = [str(p.relative_to(ROOT)) for p in project_files() if PASSWORD_ARGUMENT.search(p.read_text())]
    assert offenders == []
