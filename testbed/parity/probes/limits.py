"""SQS's and DynamoDB's size limits, each probed one byte over."""

from __future__ import annotations

from dataclasses import dataclass

from testbed.parity.probes.common import NONE_HERE, refusal
from testbed.parity.throwaway import (
    RESOURCE_WAIT_S,
    Throwaway,
    wait_until,
)
from testbed.parity.types import ProbeContext, Row, Verdict

# AWS's documented limits, each probed one byte over.
SQS_MAX_MESSAGE_BYTES = 1024 * 1024  # raised from 256 KiB in August 2025
DYNAMODB_MAX_ITEM_BYTES = 400 * 1024


@dataclass(frozen=True)
class LimitsSeen:
    sqs_error: str | None
    dynamodb_error: str | None


def observe_limits(ctx: ProbeContext) -> LimitsSeen:
    """One byte over each limit, into a probe queue and a probe table."""
    sqs, dynamodb = ctx.client("sqs"), ctx.client("dynamodb")
    with Throwaway() as made:
        queue_url = sqs.create_queue(QueueName=f"{ctx.name}-size")["QueueUrl"]
        made.delete(f"queue {ctx.name}-size", lambda: sqs.delete_queue(QueueUrl=queue_url))
        body = "x" * (SQS_MAX_MESSAGE_BYTES + 1)
        sqs_error = refusal(lambda: sqs.send_message(QueueUrl=queue_url, MessageBody=body), "InvalidParameterValue")
        dynamodb.create_table(
            TableName=ctx.name,
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        made.delete(f"table {ctx.name}", lambda: dynamodb.delete_table(TableName=ctx.name))
        if not wait_until(
            lambda: dynamodb.describe_table(TableName=ctx.name)["Table"]["TableStatus"] == "ACTIVE", RESOURCE_WAIT_S
        ):
            raise TimeoutError(f"the probe table was not active within {RESOURCE_WAIT_S:g} s")
        item = {"k": {"S": "parity"}, "v": {"S": "x" * DYNAMODB_MAX_ITEM_BYTES}}
        dynamodb_error = refusal(lambda: dynamodb.put_item(TableName=ctx.name, Item=item), "ValidationException")
    return LimitsSeen(sqs_error, dynamodb_error)


def judge_limits(seen: LimitsSeen) -> list[Row]:
    rows = []
    for feature, aws, error, consequence in (
        (
            "SQS message size",
            f"refuses a message over {SQS_MAX_MESSAGE_BYTES:,} bytes",
            seen.sqs_error,
            "a message AWS refuses is queued here",
        ),
        (
            "DynamoDB item size",
            f"refuses an item over {DYNAMODB_MAX_ITEM_BYTES:,} bytes",
            seen.dynamodb_error,
            "an item AWS refuses is stored here: a size bug passes",
        ),
    ):
        if error is not None:
            rows.append(Row(feature, aws, f"refused ({error})", Verdict.SAME, NONE_HERE))
        else:
            rows.append(Row(feature, aws, "accepted", Verdict.DIFFERS, consequence))
    return rows
