"""`testbed redrive`: dead-lettered records go back through the pipeline; error-action documents stay."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from processor.config import Settings
from telemetry import new_message
from telemetry.schema import ARRIVAL_ATTRIBUTE
from testbed.lifecycle.stack import Stack
from testbed.operate.redrive import redrive
from testbed.stores import Stores, wait_for

pytestmark = pytest.mark.e2e


def test_redrive_moves_records_back_and_keeps_what_the_rule_refused(
    stack: Stack, stores: Stores, signing_key: bytes, deployed_settings: Settings
) -> None:
    """The record arrived, failed, sat in the DLQ longer than the clock-skew limit: the processor
    must judge it by its first arrival (which the redrive keeps), not by the redrive."""
    device = f"redrive-{uuid.uuid4().hex[:6]}"
    arrived = int(time.time() * 1000) - (deployed_settings.max_clock_skew_seconds + 120) * 1000
    message = new_message(
        device_id=device,
        msg_id=7,
        ts=arrived,
        device_type="power_meter",
        firmware="3.0.1",
        readings={"voltage": (230.0, "V")},
        key=signing_key,
    )
    refused = {
        "ruleName": "r",
        "topic": f"sensors/{device}/telemetry",
        "base64OriginalPayload": "AA==",
        "failures": [{"failedAction": "RuleEvaluation", "errorMessage": "payload is not JSON"}],
    }
    sqs, outputs = stack.client("sqs"), stack.outputs()
    first_arrival = {ARRIVAL_ATTRIBUTE: {"DataType": "Number", "StringValue": str(arrived)}}
    sqs.send_message(QueueUrl=outputs.dlq_url, MessageBody=json.dumps(message), MessageAttributes=first_arrival)
    sqs.send_message(QueueUrl=outputs.dlq_url, MessageBody=json.dumps(refused))

    result = redrive(sqs, outputs.dlq_url, outputs.ingest_queue_url)

    assert result.moved >= 1 and result.kept_error_actions >= 1
    wait_for("the redriven reading", lambda: stores.reading(device, message["ts"], 7), 60)
