"""The team's store function: each record the rule selected becomes an item of the climate table."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from typing import Any

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["TABLE"])


def handle(event: dict[str, Any], context: object) -> dict[str, list[dict[str, str]]]:
    """Store each record; report the ones that failed, so the queue retries only those."""
    failures = []
    for record in event["Records"]:
        try:
            TABLE.put_item(Item=json.loads(record["body"], parse_float=Decimal))
        except Exception:  # any failure is the record's: reported below, retried by the queue
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
