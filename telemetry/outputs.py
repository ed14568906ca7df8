"""The stack outputs contract: `terraform output -json` parsed into one typed object, read by the
testbed, the rule bridge and the tests alike."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class OutputsError(ValueError):
    """The deployed stack does not provide an output the tools need."""


@dataclass(frozen=True)
class StackOutputs:
    region: str
    environment_suffix: str
    telemetry_table_name: str
    alert_state_table_name: str
    archive_bucket_name: str
    archive_stream_name: str
    alerts_topic_arn: str
    alerts_tap_queue_url: str
    ops_topic_arn: str
    ops_tap_queue_url: str
    ingest_queue_url: str
    ingest_queue_arn: str
    dlq_url: str
    processor_function_name: str
    processor_log_group_name: str
    signing_secret_arn: str
    kms_key_arn: str
    iot_rule_enabled: bool
    iot_rule_name: str
    iot_rule_sql: str

    @classmethod
    def from_terraform(cls, raw: dict[str, Any]) -> StackOutputs:
        """Build from `terraform output -json` ({name: {"value": ...}}); name what is missing."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in raw]
        if missing:
            raise OutputsError(f"stack outputs missing: {', '.join(missing)} (is the stack deployed and current?)")
        return cls(**{n: raw[n]["value"] for n in names})
