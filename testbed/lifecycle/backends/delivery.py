"""Whether the queues feeding the processor deliver: what each holds once an emulator has started
(ministack restores a message that was in flight with its visibility timer running), and a check
that a queue holding messages sees one taken (an emulator restored from state can keep a stalled
poller)."""

from __future__ import annotations

import logging
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

# How long a queue holding messages may go without one taken, and how often it is looked at.
DELIVERY_CHECK_S = 20.0
DELIVERY_POLL_S = 1.0
WAITING, IN_FLIGHT = "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"


def queues_feeding_functions(lambda_client: Any, sqs: Any) -> list[tuple[dict[str, Any], str, str]]:
    """(mapping, queue name, queue URL) of every SQS event source mapping."""
    pages = lambda_client.get_paginator("list_event_source_mappings").paginate()
    found = []
    for mapping in (m for page in pages for m in page.get("EventSourceMappings", [])):
        if ":sqs:" in mapping.get("EventSourceArn", ""):
            name = mapping["EventSourceArn"].rsplit(":", 1)[-1]
            found.append((mapping, name, sqs.get_queue_url(QueueName=name)["QueueUrl"]))
    return found


def queue_counts(sqs: Any, url: str) -> dict[str, str]:
    return dict(
        sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "VisibilityTimeout",
            ],
        )["Attributes"]
    )


def report_queues(lambda_client: Any, sqs: Any) -> None:
    """Say what each queue feeding the processor holds after the emulator started: a message in
    flight when it stopped reappears only when its visibility timer ends (minutes, by default),
    which looks like a stalled event source mapping unless it is said."""
    try:
        for mapping, name, url in queues_feeding_functions(lambda_client, sqs):
            counts = queue_counts(sqs, url)
            logger.info(
                "queue %s -> %s (%s): %s waiting, %s in flight from before the start (they come back "
                "within its visibility timeout of %s s)",
                name,
                mapping.get("FunctionArn", "").rsplit(":", 1)[-1],
                mapping.get("State"),
                counts.get(WAITING),
                counts.get(IN_FLIGHT),
                counts.get("VisibilityTimeout"),
            )
    except (BotoCoreError, ClientError) as exc:
        logger.warning("could not read the queues' state after the start: %s", exc)


def stalled_queues(lambda_client: Any, sqs: Any, wait_s: float) -> list[str]:
    """Each queue feeding a function that holds waiting messages and saw none taken in `wait_s`."""
    problems: list[str] = []
    for mapping, name, url in queues_feeding_functions(lambda_client, sqs):
        before = queue_counts(sqs, url)
        waiting, taken = (
            int(before["ApproximateNumberOfMessages"]),
            int(before["ApproximateNumberOfMessagesNotVisible"]),
        )
        if waiting == 0:
            continue
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            time.sleep(DELIVERY_POLL_S)
            now = queue_counts(sqs, url)
            if (
                int(now["ApproximateNumberOfMessages"]) < waiting
                or int(now["ApproximateNumberOfMessagesNotVisible"]) > taken
            ):
                break
        else:
            problems.append(
                f"queue {name} holds {waiting} waiting message(s) and its event source mapping "
                f"({mapping.get('State')}) took none in {wait_s:g} s"
            )
    return problems
