"""`bin/testbed redrive`: what the dead-letter queue holds, back onto the ingest path.

Records the processor failed until their redrive limit go back to the ingest queue, where the
event source mapping delivers them again (the processor is idempotent, so a record that did get
stored before is overwritten by itself). What the rule's error action sent (a payload the rule or
SQS refused) would fail the same way again: it stays in the DLQ, counted, for a person to read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from telemetry.schema import ARRIVAL_ATTRIBUTE

logger = logging.getLogger(__name__)

RECEIVE_MAX = 10
# Long enough that one pass never meets the same kept message twice.
PASS_VISIBILITY_S = 120


@dataclass
class RedriveResult:
    moved: int = 0
    kept_error_actions: int = 0


def is_error_action(body: str) -> bool:
    """An IoT rule error action document (the original payload in base64, and why it failed)."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and "base64OriginalPayload" in document and "failures" in document


def first_arrival(message: dict[str, Any]) -> str:
    """When the record first entered the pipeline: its arrival attribute, else when it was first sent."""
    attribute = message.get("MessageAttributes", {}).get(ARRIVAL_ATTRIBUTE, {})
    return str(attribute.get("StringValue") or message["Attributes"]["SentTimestamp"])


def redrive(sqs: Any, dlq_url: str, ingest_url: str) -> RedriveResult:
    """Move every dead-lettered record back to the ingest queue; a record is deleted from the DLQ
    only once the ingest queue has it, so a failure midway loses nothing. Its first arrival time
    goes with it: the processor measures clock skew from then, not from the redrive."""
    result = RedriveResult()
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=RECEIVE_MAX,
            VisibilityTimeout=PASS_VISIBILITY_S,
            WaitTimeSeconds=1,
            AttributeNames=["SentTimestamp"],
            MessageAttributeNames=[ARRIVAL_ATTRIBUTE],
        ).get("Messages", [])
        if not messages:
            return result
        for message in messages:
            if is_error_action(message["Body"]):
                result.kept_error_actions += 1
                continue
            arrival = {"DataType": "Number", "StringValue": first_arrival(message)}
            sqs.send_message(
                QueueUrl=ingest_url, MessageBody=message["Body"], MessageAttributes={ARRIVAL_ATTRIBUTE: arrival}
            )
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
            result.moved += 1
        logger.info("redrive: %d moved, %d error-action documents kept so far", result.moved, result.kept_error_actions)
