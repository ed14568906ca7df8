"""The policy variants iam-check puts, and how it judges an action nothing needed here."""

from __future__ import annotations

from typing import Any

from testbed.operate.iam_check import USED_BY_AWS_ON_THE_ROLES_BEHALF, ActionVerdict, without

DOCUMENT: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Store",
            "Effect": "Allow",
            "Action": ["dynamodb:BatchWriteItem", "dynamodb:UpdateItem"],
            "Resource": "t",
        },
        {"Sid": "Publish", "Effect": "Allow", "Action": "sns:Publish", "Resource": "a"},
    ],
}


def test_without_takes_one_action_out_and_leaves_the_original_alone() -> None:
    variant = without(DOCUMENT, "dynamodb:UpdateItem")
    assert variant["Statement"][0]["Action"] == ["dynamodb:BatchWriteItem"]
    assert variant["Statement"][1]["Action"] == ["sns:Publish"]
    assert DOCUMENT["Statement"][0]["Action"] == ["dynamodb:BatchWriteItem", "dynamodb:UpdateItem"]


def test_a_statement_left_with_no_action_is_dropped() -> None:
    variant = without(DOCUMENT, "sns:Publish")
    assert [s["Sid"] for s in variant["Statement"]] == ["Store"]


def test_an_action_nothing_needed_is_a_finding_unless_aws_uses_it_for_that_role() -> None:
    assert ActionVerdict("r", "processor", "p", "dynamodb:DeleteTable", needed=False, detail="").finding
    assert not ActionVerdict("r", "processor", "p", "logs:PutLogEvents", needed=False, detail="").finding
    assert not ActionVerdict("r", "processor", "p", "dynamodb:DeleteTable", needed=True, detail="").finding
    # the same action can be the role's own call for one role and AWS's on behalf of another
    assert not ActionVerdict("r", "firehose", "p", "s3:PutObject", needed=False, detail="").finding
    assert ActionVerdict("r", "processor", "p", "s3:PutObject", needed=False, detail="").finding
    assert set(USED_BY_AWS_ON_THE_ROLES_BEHALF) == {"processor", "firehose", "iot-rule"}
