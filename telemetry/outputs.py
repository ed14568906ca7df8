"""The stack outputs contract: `terraform output -json` parsed into one typed object, read by the
testbed, the rule bridge and the tests alike.

A stack of the user's own satisfies it with its own output names through a mapping (`ours=theirs`
pairs, `TESTBED_OUTPUTS`): the outputs the local ingress needs are required, the others only by the
tools that read them (the `stores` fixture, load-run reconciliation, the demo), which then name
what is missing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class OutputsError(ValueError):
    """The deployed stack does not provide an output the tools need, or the mapping is malformed."""


@dataclass(frozen=True)
class StackOutputs:
    # The ingress contract: the rule bridge evaluates the rule and delivers to the queue or the function.
    ingest_queue_url: str
    dlq_url: str
    processor_function_name: str
    iot_rule_name: str
    iot_rule_sql: str
    region: str
    # Read by the tools that need them; a stack of the user's own may have none of these.
    environment_suffix: str | None = None
    telemetry_table_name: str | None = None
    alert_state_table_name: str | None = None
    archive_bucket_name: str | None = None
    archive_stream_name: str | None = None
    alerts_topic_arn: str | None = None
    alerts_tap_queue_url: str | None = None
    ops_topic_arn: str | None = None
    ops_tap_queue_url: str | None = None
    ingest_queue_arn: str | None = None
    processor_log_group_name: str | None = None
    signing_secret_arn: str | None = None
    kms_key_arn: str | None = None
    iot_rule_enabled: bool = False

    @classmethod
    def required(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_terraform(cls, raw: Mapping[str, Any]) -> StackOutputs:
        """Build from `terraform output -json` ({name: {"value": ...}}); name what is missing."""
        missing = [n for n in cls.required() if n not in raw]
        if missing:
            raise OutputsError(f"stack outputs missing: {', '.join(missing)} (is the stack deployed and current?)")
        values = {n: raw[n]["value"] for n in cls.names() if n in raw}
        wrong = [f"{n} ({type(values[n]).__name__})" for n in cls.required() if not isinstance(values[n], str)]
        if wrong:
            raise OutputsError(f"stack outputs that must be text are not: {', '.join(wrong)}")
        return cls(**values)

    @property
    def function_log_group(self) -> str:
        """The processor's log group: the stack's output, else the one Lambda writes to by default."""
        return self.processor_log_group_name or f"/aws/lambda/{self.processor_function_name}"

    def need(self, name: str) -> str:
        """An output a tool cannot work without; a stack that has none (or maps none) is told which."""
        value = getattr(self, name, None) if name in self.names() else None
        if not isinstance(value, str) or not value:
            raise OutputsError(
                f"this needs the stack output {name}, which the stack does not provide: add it, or map one of "
                f"your outputs to it (TESTBED_OUTPUTS={name}=<your output>)"
            )
        return value


# `ours=theirs`, separated by commas, spaces or new lines (an environment variable or an ini list)
PAIR = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=([A-Za-z_][A-Za-z0-9_-]*)$")


def parse_output_names(text: str) -> dict[str, str]:
    """The mapping `TESTBED_OUTPUTS` gives (this contract's name -> the stack's output name)."""
    mapping: dict[str, str] = {}
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        match = PAIR.match(item)
        if match is None:
            raise OutputsError(
                f"cannot read {item!r} in the outputs mapping: write ours=theirs pairs, such as "
                "ingest_queue_url=readings_queue_url, separated by commas or spaces"
            )
        ours, theirs = match.groups()
        if ours not in StackOutputs.names():
            raise OutputsError(
                f"the outputs mapping names {ours!r}, which is none of: {', '.join(StackOutputs.names())}"
            )
        if ours in mapping and mapping[ours] != theirs:
            raise OutputsError(f"the outputs mapping gives {ours} twice ({mapping[ours]} and {theirs})")
        mapping[ours] = theirs
    return mapping


def rename_outputs(raw: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """`terraform output -json` of a stack with the contract's names: each mapped output under its
    name here (the stack's own names stay too); a mapped output the stack lacks is an error."""
    absent = [f"{theirs} (for {ours})" for ours, theirs in names.items() if theirs not in raw]
    if absent:
        raise OutputsError(
            f"the outputs mapping names outputs the stack does not have: {', '.join(absent)}; "
            f"it has: {', '.join(sorted(raw)) or 'none (is it deployed?)'}"
        )
    return {**raw, **{ours: raw[theirs] for ours, theirs in names.items()}}
