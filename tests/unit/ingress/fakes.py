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
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke(self, **kwargs: Unpack[InvocationRequestTypeDef]) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
        if self.down:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        payload = kwargs.get("Payload")
        assert isinstance(payload, bytes), "the bridge sends the event as bytes"
        records = json.loads(payload)["Records"]
        failures = [{"itemIdentifier": r["messageId"]} for r in records if self.fail(r["body"])]
        with self.lock:
            self.bodies += [r["body"] for r in records if not self.fail(r["body"])]
        return {"Payload": _Body(json.dumps({"batchItemFailures": failures}).encode())}


@dataclass
class _Body:
    data: bytes

    def read(self) -> bytes:
        return self.data
