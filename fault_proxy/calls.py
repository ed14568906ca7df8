"""Which AWS call a request is: its service, region and operation, read the way AWS routes it
(the SigV4 credential scope, `X-Amz-Target`, a query `Action`, or a REST method and path matched
against botocore's model of the service), and which attempt of the SDK's retries it is."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from urllib.parse import parse_qs

import botocore.session
from botocore.model import OperationModel

from fault_proxy.rules import known_services

# SigV4 signing names that differ from the service's name (the name a rule uses)
SIGNING_NAMES = {
    "monitoring": "cloudwatch",
    "iotdata": "iot-data",
    "execute-api": "apigateway",
    "states": "stepfunctions",
}
# A query-protocol body is read whole to find its Action: beyond this it is streamed unread.
MAX_FORM_BYTES = 1 << 20
UNKNOWN = ""
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_ATTEMPT = re.compile(r"attempt=(\d+)(?:;\s*max=(\d+))?")


@dataclass(frozen=True)
class Call:
    service: str
    region: str
    operation: str
    protocol: str
    invocation: str  # the SDK's id for one logical call, the same on each retry of it
    attempt: int
    max_attempts: int | None


@dataclass(frozen=True)
class _Route:
    operation: str
    method: str
    path: re.Pattern[str]
    query: frozenset[str]
    headers: frozenset[str]  # required request headers (lower case): S3's CopyObject is a PutObject with one
    literal: int  # how specific: the characters of the URI that are not parameters


def _required_headers(operation: OperationModel) -> frozenset[str]:
    shape = operation.input_shape
    if shape is None:
        return frozenset()
    members = shape.members
    return frozenset(
        str(members[name].serialization["name"]).lower()
        for name in shape.required_members
        if members[name].serialization.get("location") == "header"
    )


def _route(operation: OperationModel) -> _Route:
    method, uri = operation.http["method"], operation.http["requestUri"]
    path, _, query = uri.partition("?")
    pattern = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{"):
            pattern += ".+" if part.endswith("+}") else "[^/]+"
        else:
            pattern += re.escape(part)
    keys = frozenset(p.split("=")[0] for p in query.split("&") if p)
    literal = len(re.sub(r"\{[^}]+\}", "", uri))
    path_re = re.compile(f"^{pattern}/?$")
    return _Route(operation.name, method, path_re, keys, _required_headers(operation), literal)


@cache
def _routes(service: str) -> tuple[_Route, ...]:
    model = botocore.session.get_session().get_service_model(service)
    routes = [_route(model.operation_model(name)) for name in model.operation_names]
    return tuple(sorted(routes, key=lambda r: (-len(r.headers), -r.literal)))


@cache
def protocol_of(service: str) -> str:
    if service not in known_services():
        return UNKNOWN
    return str(botocore.session.get_session().get_service_model(service).protocol)


def rest_operation(
    service: str, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> str:
    present = {name.lower() for name in headers or {}}
    for route in _routes(service):
        if (
            route.method == method
            and route.query <= query.keys()
            and route.headers <= present
            and route.path.match(path)
        ):
            return route.operation
    return UNKNOWN


def needs_body(headers: Mapping[str, str]) -> bool:
    """A query-protocol call names its operation in its form body (small: SNS, SQS, STS, IAM)."""
    form = headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
    return form and "X-Amz-Target" not in headers and int(headers.get("Content-Length") or 0) <= MAX_FORM_BYTES


def identify(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], form: bytes | None) -> Call:
    """The call a request makes; fields it does not say are UNKNOWN (a rule naming them misses it)."""
    scope = _SCOPE.search(headers.get("Authorization", ""))
    region, signing = scope.groups() if scope else (UNKNOWN, UNKNOWN)
    service = SIGNING_NAMES.get(signing, signing)
    target = headers.get("X-Amz-Target")
    if target:
        operation = target.rpartition(".")[2]
    elif form is not None:
        operation = parse_qs(form.decode("utf-8", "replace")).get("Action", [UNKNOWN])[0]
    elif service in known_services():
        operation = rest_operation(service, method, path, query, headers)
    else:
        operation = UNKNOWN
    attempt = _ATTEMPT.search(headers.get("amz-sdk-request", ""))
    return Call(
        service=service,
        region=region,
        operation=operation,
        protocol=protocol_of(service),
        invocation=headers.get("amz-sdk-invocation-id", ""),
        attempt=int(attempt.group(1)) if attempt else 1,
        max_attempts=int(attempt.group(2)) if attempt and attempt.group(2) else None,
    )
