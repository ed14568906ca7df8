"""Fault rules and network effects in the JSON of LocalStack's Chaos API, validated, and the seeded
decision whether a rule hits a call.

A rule is LocalStack's: `service`, `region`, `operation`, `probability`, `error` (`statusCode`,
`code`); each field it leaves out matches every call. One extension of ours: `latency` (ms), which
delays the calls a rule matches (with no `error`, the call then goes through). The effects
(`/_localstack/chaos/effects`) are LocalStack's too: `latency` in ms added to every call.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

import botocore.session
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from fault_proxy.exceptions import RuleError

# The most a rule or an effect may delay one call: longer holds a client past any SDK timeout.
MAX_LATENCY_MS = 60_000
# LocalStack's answer when a rule names no error of its own.
DEFAULT_STATUS = 503
DEFAULT_CODE = "ServiceUnavailable"
# The most rules one request may set: a rule list is read for every call.
MAX_RULES = 100
# SigV4 signing names that differ from the service's name (the name a rule uses); a service signed as
# another (dynamodbstreams as dynamodb) cannot be told apart, and a rule for it is refused.
SIGNING_NAMES = {"monitoring": "cloudwatch", "iotdata": "iot-data", "states": "stepfunctions"}


@cache
def known_services() -> frozenset[str]:
    """The services botocore has a model for, by the names AWS CLI and LocalStack use."""
    return frozenset(botocore.session.get_session().get_available_services())


@cache
def told_apart(service: str) -> bool:
    """Whether the proxy can tell the service's calls from its SigV4 signing name."""
    signing = botocore.session.get_session().get_service_model(service).signing_name or service
    return SIGNING_NAMES.get(signing, signing) == service


@cache
def operations_of(service: str) -> frozenset[str]:
    return frozenset(botocore.session.get_session().get_service_model(service).operation_names)


class FaultError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    statusCode: int = Field(default=DEFAULT_STATUS, ge=400, le=599)  # noqa: N815 (LocalStack's JSON)
    code: str = Field(default=DEFAULT_CODE, pattern=r"^[A-Za-z][A-Za-z0-9.]{0,99}$")


class FaultRule(BaseModel):
    """One rule of `/_localstack/chaos/faults`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str | None = None
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    operation: str | None = Field(default=None, pattern=r"^[A-Z][A-Za-z0-9]{0,99}$")
    probability: float | None = Field(default=None, ge=0, le=1)
    error: FaultError | None = None
    latency: int | None = Field(default=None, ge=0, le=MAX_LATENCY_MS, description="ms (ours, not LocalStack's)")

    @field_validator("service")
    @classmethod
    def _known_service(cls, service: str | None) -> str | None:
        if service is not None and service not in known_services():
            raise ValueError(f"unknown service {service!r} (a name as the AWS CLI spells it: dynamodb, sns, ...)")
        if service is not None and not told_apart(service):
            raise ValueError(f"{service}'s calls are signed as another service's: the proxy cannot tell them apart")
        return service

    @model_validator(mode="after")
    def _known_operation(self) -> FaultRule:
        if (
            self.service is not None
            and self.operation is not None
            and self.operation not in operations_of(self.service)
        ):
            raise ValueError(f"{self.service} has no operation {self.operation!r}")
        return self

    def answers_error(self) -> bool:
        """A rule with only a latency delays calls; any other rule fails them (LocalStack's default)."""
        return self.error is not None or self.latency is None

    @property
    def failure(self) -> FaultError:
        return self.error or FaultError()

    def matches(self, service: str, region: str, operation: str) -> bool:
        return (
            (self.service is None or self.service == service)
            and (self.region is None or self.region == region)
            and (self.operation is None or self.operation == operation)
        )

    def key(self) -> str:
        """The rule's identity: the same rule set twice is one rule, counted once."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True)

    def hits(self, seed: int, nth: int) -> bool:
        """Whether the rule hits the `nth` call it matches: a hash of the seed, the rule and the call's
        number, so the same seed and the same calls give the same faults whatever the threads' order."""
        if self.probability is None or self.probability >= 1:
            return True
        digest = hashlib.blake2b(f"{seed}\0{self.key()}\0{nth}".encode(), digest_size=8).digest()
        return int.from_bytes(digest) / 2**64 < self.probability


class Effects(BaseModel):
    """`/_localstack/chaos/effects`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency: int = Field(default=0, ge=0, le=MAX_LATENCY_MS, description="ms added to every call")


_RULES = TypeAdapter(list[FaultRule])


def _reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors())


def parse_rules(body: bytes) -> list[FaultRule]:
    """The rules of a request body, or RuleError saying what is wrong with which rule."""
    raw = _json(body)
    if not isinstance(raw, list):
        raise RuleError("the body must be a list of rules, as LocalStack's Chaos API takes them")
    if len(raw) > MAX_RULES:
        raise RuleError(f"{len(raw)} rules: at most {MAX_RULES}")
    try:
        return _RULES.validate_python(raw)
    except ValidationError as exc:
        raise RuleError(f"not a valid rule: {_reason(exc)}") from None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RuleError(f"the body is not JSON: {type(exc).__name__}: {str(exc)[:200]}") from None


def parse_effects(body: bytes) -> Effects:
    try:
        return Effects.model_validate(_json(body) if body else {})
    except ValidationError as exc:
        raise RuleError(f"not valid effects: {_reason(exc)}") from None
