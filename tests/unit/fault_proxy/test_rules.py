"""Fault rules as LocalStack's Chaos API takes them: what is valid, what is refused and why, and the
seeded decision whether a rule hits a call."""

from __future__ import annotations

import json
import re

import pytest

from fault_proxy.calls import identify, reads_form, rest_operation
from fault_proxy.exceptions import RuleError
from fault_proxy.rules import MAX_LATENCY_MS, MAX_RULES, FaultRule, parse_effects, parse_rules

LOCALSTACK_EXAMPLE = b"""[{"service": "s3", "region": "us-east-1", "operation": "PutObject", "probability": 0.5,
  "error": {"statusCode": 503, "code": "ServiceUnavailable"}}]"""


def test_localstacks_documented_rule_is_read_as_written() -> None:
    (rule,) = parse_rules(LOCALSTACK_EXAMPLE)
    assert (rule.service, rule.region, rule.operation, rule.probability) == ("s3", "us-east-1", "PutObject", 0.5)
    assert (rule.failure.statusCode, rule.failure.code) == (503, "ServiceUnavailable")


def test_an_empty_rule_fails_every_call_with_localstacks_default_error() -> None:
    (rule,) = parse_rules(b"[{}]")
    assert rule.matches("dynamodb", "eu-west-1", "PutItem") and rule.answers_error()
    assert (rule.failure.statusCode, rule.failure.code) == (503, "ServiceUnavailable")
    assert all(rule.hits(seed=1, nth=n) for n in range(1, 50))


def test_a_latency_rule_delays_without_failing_unless_it_names_an_error() -> None:
    delay, both = parse_rules(b'[{"latency": 200}, {"latency": 200, "error": {"code": "Throttling"}}]')
    assert not delay.answers_error() and both.answers_error()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b'"a string"', "a list of rules"),
        (b'{"service": "sns"}', "a list of rules"),
        (b"[" * 50_000, "not JSON"),
        (b'[{"service": "dynamodbstreams"}]', "cannot tell them apart"),
        (b'[{"service": "dynamo"}]', "unknown service 'dynamo'"),
        (b'[{"service": "dynamodb", "operation": "PutObject"}]', "dynamodb has no operation 'PutObject'"),
        (b'[{"probability": 1.5}]', "0.probability"),
        (b'[{"probability": -0.1}]', "0.probability"),
        (b'[{"latency": -5}]', "0.latency"),
        (f'[{{"latency": {MAX_LATENCY_MS + 1}}}]'.encode(), "0.latency"),
        (b'[{"error": {"statusCode": 200}}]', "0.error.statusCode"),
        (b'[{"error": {"code": "<script>"}}]', "0.error.code"),
        (b'[{"region": "mars"}]', "0.region"),
        (b'[{"servce": "sqs"}]', "0.servce"),
        (json.dumps([{}] * (MAX_RULES + 1)).encode(), f"at most {MAX_RULES}"),
    ],
)
def test_a_bad_rule_is_refused_with_its_reason(body: bytes, reason: str) -> None:
    with pytest.raises(RuleError, match=re.escape(reason)):
        parse_rules(body)


@pytest.mark.parametrize("body", [b'{"latency": -1}', b'{"latency": 10e9}', b'{"delay": 5}', b"[]"])
def test_bad_effects_are_refused(body: bytes) -> None:
    with pytest.raises(RuleError, match="not valid effects"):
        parse_effects(body)


def test_the_decision_is_the_seeds_and_the_calls_not_a_shared_random_stream() -> None:
    rule = FaultRule(service="dynamodb", probability=0.3)
    first = [rule.hits(seed=7, nth=n) for n in range(1, 2001)]
    assert first == [rule.hits(seed=7, nth=n) for n in range(1, 2001)], "same seed, same calls: same faults"
    assert first != [rule.hits(seed=8, nth=n) for n in range(1, 2001)]
    assert 0.25 < sum(first) / len(first) < 0.35
    other = FaultRule(service="sns", probability=0.3)
    assert first != [other.hits(seed=7, nth=n) for n in range(1, 2001)], "each rule draws its own"


def test_a_rule_matches_on_what_it_names_only() -> None:
    rule = FaultRule(service="dynamodb", operation="BatchWriteItem")
    assert rule.matches("dynamodb", "us-east-1", "BatchWriteItem")
    assert not rule.matches("dynamodb", "us-east-1", "PutItem")
    assert not rule.matches("firehose", "us-east-1", "BatchWriteItem")
    assert FaultRule(region="eu-west-1").matches("sqs", "eu-west-1", "SendMessage")
    assert not FaultRule(region="eu-west-1").matches("sqs", "us-east-1", "SendMessage")


SCOPE = "AWS4-HMAC-SHA256 Credential=test/20261207/{region}/{service}/aws4_request, SignedHeaders=host, Signature=x"


def test_calls_are_named_as_aws_routes_them() -> None:
    json_call = identify(
        "POST",
        "/",
        {},
        {
            "Authorization": SCOPE.format(region="eu-west-1", service="dynamodb"),
            "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
            "amz-sdk-invocation-id": "abc",
            "amz-sdk-request": "attempt=2; max=3",
        },
        None,
    )
    assert (json_call.service, json_call.region, json_call.operation, json_call.protocol) == (
        "dynamodb",
        "eu-west-1",
        "BatchWriteItem",
        "json",
    )
    assert (json_call.invocation, json_call.attempt, json_call.max_attempts) == ("abc", 2, 3)
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "Content-Length": "40"}
    assert reads_form(form, "sns") and not reads_form(form, "s3"), "S3's form uploads are objects, not calls"
    sns = {**form, "Authorization": SCOPE.format(region="us-east-1", service="sns")}
    query_call = identify("POST", "/", {}, sns, b"Action=Publish")
    assert (query_call.operation, query_call.protocol) == ("Publish", "query")
    assert identify("POST", "/", {}, sns, None).operation == "", "a form too large to read is not guessed"
    assert rest_operation("lambda", "POST", "/2015-03-31/functions/processor/invocations", {}) == "Invoke"
    iot = {"Authorization": SCOPE.format(region="us-east-1", service="iotdata")}
    assert identify("POST", "/topics/devices%2Fd1%2Ft", {}, iot, None).operation == "Publish"
    cloudwatch = identify(
        "POST", "/", {}, {"Authorization": SCOPE.format(region="us-east-1", service="monitoring")}, None
    )
    assert cloudwatch.service == "cloudwatch"
    unsigned = identify("GET", "/_localstack/health", {}, {}, None)
    assert (unsigned.service, unsigned.operation) == ("", "")


def test_a_form_body_is_read_only_when_small_and_its_length_known() -> None:
    form = "application/x-www-form-urlencoded"
    assert not reads_form({"Content-Type": form, "Content-Length": str(2 << 20)}, "sns")
    assert not reads_form({"Content-Type": form, "Transfer-Encoding": "chunked"}, "sns")
    assert not reads_form({"Content-Type": "application/x-amz-json-1.0", "Content-Length": "10"}, "dynamodb")
