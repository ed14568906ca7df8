"""A fault answered as AWS answers it on the wire, per protocol, so botocore parses the error code,
retries it or raises it exactly as against AWS: JSON 1.0/1.1 (`__type`, DynamoDB, Firehose, SQS,
KMS), query (XML `ErrorResponse`, SNS, STS), REST-JSON (`x-amzn-ErrorType`, Lambda, IoT) and REST-XML
(`Error`, S3). Other protocols get the REST-JSON form."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import cache
from xml.sax.saxutils import escape

import botocore.session

from fault_proxy.calls import Call
from fault_proxy.rules import FaultError, known_services

MESSAGE = "injected by the testbed's API fault layer"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@cache
def _metadata(service: str) -> dict[str, str]:
    if service not in known_services():
        return {}
    return dict(botocore.session.get_session().get_service_model(service).metadata)


def _json_type(service: str, code: str) -> str:
    """DynamoDB's form: `com.amazonaws.dynamodb.v20120810#Code` (botocore reads what follows `#`)."""
    target = _metadata(service).get("targetPrefix", service)
    name, _, version = target.partition("_")
    return f"com.amazonaws.{name.lower()}.v{version}#{code}" if version else code


def error_answer(call: Call, error: FaultError) -> Answer:
    request_id = str(uuid.uuid4())
    status, code = error.statusCode, error.code
    sender = "Sender" if status < 500 else "Receiver"
    headers = {"x-amzn-RequestId": request_id}
    if call.protocol == "json":
        version = _metadata(call.service).get("jsonVersion", "1.0")
        headers["Content-Type"] = f"application/x-amz-json-{version}"
        if _metadata(call.service).get("awsQueryCompatible") is not None:
            headers["x-amzn-query-error"] = f"{code};{sender}"
        body = json.dumps({"__type": _json_type(call.service, code), "message": MESSAGE}).encode()
    elif call.protocol == "query":
        headers["Content-Type"] = "text/xml"
        body = (
            f'<ErrorResponse xmlns="https://{call.service}.amazonaws.com/doc/"><Error><Type>{sender}</Type>'
            f"<Code>{escape(code)}</Code><Message>{MESSAGE}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
    elif call.protocol == "rest-xml":
        headers["Content-Type"] = "application/xml"
        headers["x-amz-request-id"] = request_id
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
            f"<Message>{MESSAGE}</Message><RequestId>{request_id}</RequestId></Error>"
        ).encode()
    else:
        headers["Content-Type"] = "application/json"
        headers["x-amzn-ErrorType"] = code
        body = json.dumps({"message": MESSAGE, "Type": "User" if status < 500 else "Service"}).encode()
    headers["Content-Length"] = str(len(body))
    return Answer(status, headers, body)
