"""Which AWS services infra/ creates, and which the README says it creates."""

from __future__ import annotations

import re

from tests.contract.conftest import blocks
from tests.docs import manual_text

# Resource type prefix -> the service name the README uses. Longest prefix wins.
SERVICE_OF_PREFIX = {
    "aws_cloudwatch_log_": "CloudWatch Logs",
    "aws_cloudwatch_metric_alarm": "CloudWatch",
    "aws_dynamodb_": "DynamoDB",
    "aws_iam_": "IAM",
    "aws_iot_": "IoT Core",
    "aws_kinesis_firehose_": "Data Firehose",
    "aws_kms_": "KMS",
    "aws_lambda_": "Lambda",
    "aws_s3_": "S3",
    "aws_secretsmanager_": "Secrets Manager",
    "aws_sns_": "SNS",
    "aws_sqs_": "SQS",
}
DOCS_MARKERS = ("<!-- services:start -->", "<!-- services:end -->")


def service_of(resource_type: str) -> str:
    matches = [p for p in SERVICE_OF_PREFIX if resource_type.startswith(p)]
    if not matches:
        raise AssertionError(f"{resource_type} is not mapped to a service: add it to SERVICE_OF_PREFIX")
    return SERVICE_OF_PREFIX[max(matches, key=len)]


def services_in_infra() -> set[str]:
    return {service_of(type_) for type_, _, _ in blocks("resource")}


def services_in_docs() -> set[str]:
    text = manual_text()
    start, end = (text.index(m) for m in DOCS_MARKERS)
    return set(re.findall(r"^- \*\*(.+?)\*\*", text[start:end], flags=re.MULTILINE))
