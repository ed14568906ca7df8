"""SQS bodies reach the function byte for byte, as on AWS, through LocalStack 4.14.0's SQS poller.

LocalStack's event source mapping parses every SQS body as JSON (to filter on it) and writes it back
with `json.dumps`: the function gets `{"a": 1.0}` for `{"a":1.00}`, `Infinity` for `1e400`, escapes
for UTF-8 text. A body that `json.loads` raises on other than with JSONDecodeError (an integer of
more than 4,300 digits, nesting deeper than the recursion limit) fails the whole batch, whose
messages then all end in the DLQ. AWS passes each body through unchanged and parses only to filter.
`keep_sqs_bodies` makes the poller do the same: a body that does not parse is left as text, and the
events that pass the filter carry their original body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from localstack.services.lambda_.event_source_mapping.pollers import sqs_poller


def _loads(text: str) -> Any:
    """json.loads for filtering: whatever it cannot parse is not JSON, as AWS's filter treats it."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise json.JSONDecodeError(f"not JSON for filtering: {type(exc).__name__}", str(text)[:64], 0) from None


def keep_sqs_bodies() -> None:
    """Patch LocalStack's SQS poller once (idempotent): unchanged bodies, no batch failed by one body."""
    poller = sqs_poller.SqsPoller
    if getattr(poller, "_bodies_kept", False):
        return
    sqs_poller.json = SimpleNamespace(loads=_loads, dumps=json.dumps, JSONDecodeError=json.JSONDecodeError)
    handle: Callable[..., Any] = poller.handle_messages

    def handle_messages(self: Any, messages: list[dict[str, Any]]) -> Any:
        bodies = {message["MessageId"]: message.get("Body") for message in messages}
        choose = self.filter_events

        def filter_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            matching: list[dict[str, Any]] = choose(events)
            for event in matching:
                event["body"] = bodies.get(event["messageId"], event["body"])
            return matching

        self.filter_events = filter_events
        try:
            return handle(self, messages)
        finally:
            del self.filter_events

    poller.handle_messages = handle_messages
    poller._bodies_kept = True
