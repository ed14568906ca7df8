"""In-memory SQS and Lambda for the rule bridge's tests: each can refuse, fail or vanish on cue, as
the real services do, answering in their wire shapes (botocore's ClientError, an invoke's Payload)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Unpack

from botocore.exceptions import ClientError, EndpointConnectionError
from mypy_boto3_lambda.type_defs import InvocationRequestTypeDef
from mypy_boto3_sqs.type_defs import SendMessageBatchRequestTypeDef, SendMessageRequestTypeDef

from ingress.delivery import BridgeConfig
from ingress.rule import parse_rule


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "SendMessageBatch")


@dataclass
class FakeSqs:
    """SendMessageBatch/SendMessage into lists; `refuse` decides an entry's fate like SQS would."""

    sent: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    refuse: Callable[[str], str | None] = lambda body: None
    batch_error: Callable[[list[str]], Exception | None] = lambda bodies: None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send_message_batch(self, **kwargs: Unpack[SendMessageBatchRequestTypeDef]) -> dict[str, Any]:
        entries = kwargs["Entries"]
        error = self.batch_error([e["MessageBody"] for e in entries])
        if error is not None:
            raise error
        failed = []
        with self.lock:
            for entry in entries:
                code = self.refuse(entry["MessageBody"])
                if code is None:
                    self.sent.append(entry["MessageBody"])
                else:
                    failed.append({"Id": entry["Id"], "SenderFault": True, "Code": code, "Message": code})
        return {"Successful": [], "Failed": failed}

    def send_message(self, **kwargs: Unpack[SendMessageRequestTypeDef]) -> dict[str, Any]:
        with self.lock:
            self.dead.append(kwargs["MessageBody"])
        return {}

    def error_documents(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(b) for b in self.dead]


@dataclass
class FakeLambda:
    """Accepts every record unless `down` (unreachable) or `fail` (reports the record failed)."""

    bodies: list[str] = field(default_factory=list)
    down: bool = False
    fail: Callable[[str], bool] = lambda body: False
    calls: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)  # each invoke's arguments, the event parsed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke(self, **kwargs: Unpack[InvocationRequestTypeDef]) -> dict[str, Any]:
        payload = kwargs.get("Payload")
        assert isinstance(payload, bytes), "the bridge sends the event as bytes"
        event = json.loads(payload)
        with self.lock:
            self.calls += 1
            self.requests.append({**kwargs, "Payload": event})
        if self.down:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        records = event["Records"]
        failures = [{"itemIdentifier": r["messageId"]} for r in records if self.fail(r["body"])]
        with self.lock:
            self.bodies += [r["body"] for r in records if not self.fail(r["body"])]
        return {"Payload": _Body(json.dumps({"batchItemFailures": failures}).encode())}


@dataclass
class _Body:
    data: bytes

    def read(self) -> bytes:
        return self.data


def bridge_config(mode: str = "direct", **overrides: Any) -> BridgeConfig:
    """A bridge of the rule `telemetry` on SELECT * from the device topics, acting on these fakes."""
    settings: dict[str, Any] = {
        "rule": parse_rule("SELECT * FROM 'sensors/+/telemetry'"),
        "rule_name": "telemetry",
        "mode": mode,
        "host": "127.0.0.1",
        "port": 1,
        "username": "u",
        "password": "p",
        "queue_url": "ingest",
        "dlq_url": "dlq",
        "function_name": "processor",
    }
    return BridgeConfig(**{**settings, **overrides})


def failing_first(call: Callable[..., Any], errors: list[Exception]) -> Callable[..., Any]:
    """`call`, raising each of `errors` in turn first: an outage that ends."""

    def flaky(**kwargs: Any) -> Any:
        if errors:
            raise errors.pop(0)
        return call(**kwargs)

    return flaky
