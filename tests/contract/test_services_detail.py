"""Each attribute the README's services list claims is in infra/ (not only the service names)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.contract.conftest import blocks
from tests.contract.services import DOCS_MARKERS
from tests.docs import manual_text


def resources(type_: str) -> dict[str, dict[str, Any]]:
    return {name: body for t, name, body in blocks("resource") if t == type_}


def one(type_: str) -> dict[str, Any]:
    (body,) = resources(type_).values()
    return body


def first(value: Any) -> Any:
    """A nested block as python-hcl2 gives it: a list of one body."""
    return value[0] if isinstance(value, list) else value


def alarm_on(metric: str, dimension: str) -> bool:
    return any(
        a["metric_name"] == metric and dimension in str(a.get("dimensions"))
        for a in resources("aws_cloudwatch_metric_alarm").values()
    )


def firehose_s3() -> dict[str, Any]:
    return dict(first(one("aws_kinesis_firehose_delivery_stream")["extended_s3_configuration"]))


def expiring_prefixes() -> set[str]:
    rules = one("aws_s3_bucket_lifecycle_configuration")["rule"]
    return {first(r["filter"]).get("prefix", "") for r in rules if "expiration" in r}


CLAIMS: list[tuple[str, str, Callable[[], bool]]] = [
    ("DynamoDB", "TTL", lambda: all(first(t["ttl"])["enabled"] for t in resources("aws_dynamodb_table").values())),
    (
        "DynamoDB",
        "PITR",
        lambda: all(first(t["point_in_time_recovery"])["enabled"] for t in resources("aws_dynamodb_table").values()),
    ),
    (
        "DynamoDB",
        "KMS",
        lambda: all(
            first(t.get("server_side_encryption", [{}])).get("kms_key_arn")
            for t in resources("aws_dynamodb_table").values()
        ),
    ),
    (
        "S3",
        "versioned",
        lambda: first(one("aws_s3_bucket_versioning")["versioning_configuration"])["status"] == "Enabled",
    ),
    (
        "S3",
        "encrypted",
        lambda: "aws:kms" in str(one("aws_s3_bucket_server_side_encryption_configuration")["rule"]),
    ),
    (
        "S3",
        "private",
        lambda: all(
            one("aws_s3_bucket_public_access_block")[k] is True
            for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
        ),
    ),
    (
        "S3",
        "TLS-only",
        lambda: (
            "aws:SecureTransport" in str(resources("aws_s3_bucket_policy"))
            or "aws:SecureTransport" in str(list(blocks("data")))
        ),
    ),
    ("S3", "with expiry", lambda: {"raw/", "quarantine/"} <= expiring_prefixes()),
    ("Data Firehose", "GZIP", lambda: firehose_s3()["compression_format"] == "GZIP"),
    (
        "Data Firehose",
        "buffered",
        lambda: firehose_s3()["buffering_size"] > 0 and firehose_s3()["buffering_interval"] > 0,
    ),
    ("Data Firehose", "date-partitioned", lambda: "!{timestamp:yyyy}" in firehose_s3()["prefix"]),
    (
        "Lambda",
        "partial batch responses",
        lambda: one("aws_lambda_event_source_mapping")["function_response_types"] == ["ReportBatchItemFailures"],
    ),
    (
        "SQS",
        "dead-letter queue",
        lambda: "aws_sqs_queue.dlq.arn" in resources("aws_sqs_queue")["ingest"]["redrive_policy"],
    ),
    ("CloudWatch Logs", "KMS-encrypted", lambda: bool(one("aws_cloudwatch_log_group").get("kms_key_id"))),
    ("CloudWatch Logs", "with retention", lambda: bool(one("aws_cloudwatch_log_group").get("retention_in_days"))),
    ("CloudWatch", "processor errors", lambda: alarm_on("Errors", "aws_lambda_function.processor")),
    ("CloudWatch", "DLQ depth", lambda: alarm_on("ApproximateNumberOfMessagesVisible", "aws_sqs_queue.dlq")),
    (
        "CloudWatch",
        "age of the oldest ingest message",
        lambda: alarm_on("ApproximateAgeOfOldestMessage", "aws_sqs_queue.ingest"),
    ),
]


def readme_line(service: str) -> str:
    text = manual_text()
    start, end = (text.index(m) for m in DOCS_MARKERS)
    (line,) = re.findall(rf"^- \*\*{re.escape(service)}\*\*: (.*)$", text[start:end], flags=re.MULTILINE)
    return str(line)


@pytest.mark.parametrize(("service", "claim", "holds"), CLAIMS, ids=[f"{s}: {c}" for s, c, _ in CLAIMS])
def test_what_the_readme_claims_infra_has(service: str, claim: str, holds: Callable[[], bool]) -> None:
    assert claim in readme_line(service), f"the README no longer claims {claim!r} for {service}: update CLAIMS"
    assert holds(), f"the README says {service} is {claim!r}, infra/ does not"
