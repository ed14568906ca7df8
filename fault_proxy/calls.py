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

from fault_proxy.rules import SIGNING_NAMES, known_services

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


def _required(operation: OperationModel, location: str) -> frozenset[str]:
    """The wire names of the operation's required members sent in `location` (header, querystring)."""
    shape = operation.input_shape
    if shape is None:
        return frozenset()
    members = shape.members
    return frozenset(
        str(members[name].serialization["name"]).lower()
        if location == "header"
        else members[name].serialization["name"]
        for name in shape.required_members
        if members[name].serialization.get("location") == location
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
    keys = frozenset(p.split("=")[0] for p in query.split("&") if p) | _required(operation, "querystring")
    literal = len(re.sub(r"\{[^}]+\}", "", uri))
    path_re = re.compile(f"^{pattern}/?$")
    return _Route(operation.name, method, path_re, keys, _required(operation, "header"), literal)


@cache
def _routes(service: str) -> tuple[_Route, ...]:
    model = botocore.session.get_session().get_service_model(service)
    routes = [_route(model.operation_model(name)) for name in model.operation_names]
    return tuple(sorted(routes, key=lambda r: (-len(r.headers), -len(r.query), -r.literal)))


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


def signed_service(headers: Mapping[str, str]) -> tuple[str, str]:
    """The region and service of a SigV4-signed request (UNKNOWN for an unsigned one: not an AWS call)."""
    scope = _SCOPE.search(headers.get("Authorization", ""))
    if scope is None:
        return UNKNOWN, UNKNOWN
    region, signing = scope.groups()
    return region, SIGNING_NAMES.get(signing, signing)


def reads_form(headers: Mapping[str, str], service: str) -> bool:
    """A query-protocol call (SNS, STS, IAM; SQS from older SDKs) names its operation in its form body,
    read whole when its length is known and small; any other body streams through unread."""
    length = headers.get("Content-Length", "")
    return (
        headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
        and "X-Amz-Target" not in headers
        and length.isdigit()
        and int(length) <= MAX_FORM_BYTES
        and protocol_of(service) in ("query", "json")
    )


def identify(
    method: str, raw_path: str, query: Mapping[str, str], headers: Mapping[str, str], form: bytes | None
) -> Call:
    """The call a request makes; what it does not say is UNKNOWN (a rule naming it misses the call).
    The error protocol is the request's own: a form `Action` gets the query protocol's XML even from a
    service whose model is JSON now (SQS called by an older SDK)."""
    region, service = signed_service(headers)
    target = headers.get("X-Amz-Target")
    if target:
        operation, protocol = target.rpartition(".")[2], "json"
    elif form is not None:
        operation, protocol = parse_qs(form.decode("utf-8", "replace")).get("Action", [UNKNOWN])[0], "query"
    elif protocol_of(service) in ("query", "json"):
        operation, protocol = UNKNOWN, protocol_of(service)  # a body too large to read: not told apart
    elif service in known_services():
        path = raw_path.partition("?")[0]
        operation, protocol = rest_operation(service, method, path, query, headers), protocol_of(service)
    else:
        operation, protocol = UNKNOWN, UNKNOWN
    attempt = _ATTEMPT.search(headers.get("amz-sdk-request", ""))
    return Call(
        service=service,
        region=region,
        operation=operation,
        protocol=protocol,
        invocation=headers.get("amz-sdk-invocation-id", ""),
        attempt=int(attempt.group(1)) if attempt else 1,
        max_attempts=int(attempt.group(2)) if attempt and attempt.group(2) else None,
    )
