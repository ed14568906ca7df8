"""Alarms reach someone, and the policies that name resources by built ARNs name the deployed ones."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from testbed.lifecycle.stack import Stack
from testbed.stores import Stores, wait_for

pytestmark = pytest.mark.e2e
WAIT_S = 60.0


def test_an_alarm_notification_reaches_the_ops_tap(stack: Stack, stores: Stores) -> None:
    outputs = stack.outputs()
    cloudwatch = stack.client("cloudwatch")
    dlq_name = outputs.dlq_url.rsplit("/", 1)[-1]
    (alarm,) = cloudwatch.describe_alarms_for_metric(
        Namespace="AWS/SQS",
        MetricName="ApproximateNumberOfMessagesVisible",
        Dimensions=[{"Name": "QueueName", "Value": dlq_name}],
    )["MetricAlarms"]
    name, reason = alarm["AlarmName"], f"e2e: {uuid.uuid4().hex}"
    # Actions fire on a change of state, so start from OK (the alarm has no OK actions).
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="e2e: before the alarm")
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=reason)
    try:
        (notification,) = wait_for(
            "the alarm in the ops tap",
            lambda: [n for n in stores.drain_alarms() if n["NewStateReason"] == reason],
            WAIT_S,
        )
    finally:
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="e2e: after the alarm")
    assert notification["topic_arn"] == outputs.ops_topic_arn
    assert (notification["AlarmName"], notification["NewStateValue"]) == (name, "ALARM")


def statement_values(document: str | dict[str, Any], key: str) -> list[str]:
    """Every value a policy's conditions compare `key` with, whatever the operator."""
    policy = json.loads(document) if isinstance(document, str) else document
    values: list[str] = []
    for statement in policy["Statement"]:
        for keys in statement.get("Condition", {}).values():
            found = keys.get(key, [])
            values += [found] if isinstance(found, str) else found
    return values


def trusted_source(stack: Stack, role_name: str) -> list[str]:
    """The aws:SourceArn values of a role's trust policy."""
    role = stack.client("iam").get_role(RoleName=role_name)["Role"]
    return statement_values(role["AssumeRolePolicyDocument"], "aws:SourceArn")


def test_the_arns_the_policies_build_from_names_are_the_deployed_resources(stack: Stack) -> None:
    """The policies cannot read these ARNs from the resources (a cycle): a typo would lock a service out on AWS."""
    outputs = stack.outputs()
    function = stack.client("lambda").get_function(FunctionName=outputs.processor_function_name)["Configuration"]
    assert trusted_source(stack, function["Role"].rsplit("/", 1)[-1]) == [function["FunctionArn"]]
    stream = stack.client("firehose").describe_delivery_stream(DeliveryStreamName=outputs.archive_stream_name)
    description = stream["DeliveryStreamDescription"]
    (destination,) = description["Destinations"]
    role = destination["ExtendedS3DestinationDescription"]["RoleARN"].rsplit("/", 1)[-1]
    assert trusted_source(stack, role) == [description["DeliveryStreamARN"]]
    if outputs.iot_rule_enabled:
        rule = stack.client("iot").get_topic_rule(ruleName=outputs.iot_rule_name)
        role = rule["rule"]["actions"][0]["sqs"]["roleArn"].rsplit("/", 1)[-1]
        assert trusted_source(stack, role) == [rule["ruleArn"]]

    key_policy = stack.client("kms").get_key_policy(KeyId=outputs.kms_key_arn, PolicyName="default")["Policy"]
    assert statement_values(key_policy, "kms:EncryptionContext:aws:sns:topicArn") == [outputs.ops_topic_arn]
    (log_group,) = stack.client("logs").describe_log_groups(logGroupNamePrefix=outputs.processor_log_group_name)[
        "logGroups"
    ]
    assert statement_values(key_policy, "kms:EncryptionContext:aws:logs:arn") == [log_group["arn"].removesuffix(":*")]
    (pattern,) = statement_values(key_policy, "aws:SourceArn")
    alarms = stack.client("cloudwatch").describe_alarms()["MetricAlarms"]
    stacks_alarms = [a for a in alarms if outputs.ops_topic_arn in a["AlarmActions"]]
    assert stacks_alarms and all(a["AlarmArn"].startswith(pattern.removesuffix("*")) for a in stacks_alarms)
