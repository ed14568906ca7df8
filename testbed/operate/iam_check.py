"""`make iam-check`: is every action of the stack's role policies needed? Each one is taken away in
turn on the running emulator (IAM enforced), the pipeline probed, and the policy put back.

The variant is put with IAM's PutRolePolicy on the emulator: `infra/` itself never changes, and the
emulator evaluates the next call against it. An action whose removal breaks nothing here is either
one AWS uses on the role's behalf and the emulator does not (explained per action), or a finding.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from telemetry import new_message
from testbed.exceptions import TestbedError
from testbed.lifecycle.stack import Stack
from testbed.stores import Stores

PROBE_TIMEOUT_S = 30.0
# Changing this variable of the function makes the emulator start a fresh worker, whose first
# batch fetches the signing key again (a warm one has it cached, and would hide a removed action).
PROBE_VARIABLE = "IAM_CHECK_PROBE"
# Per role (its name after the stack's prefix): the actions AWS uses on the role's behalf where the
# emulator acts without the role, so taking them away changes nothing here.
_FIREHOSE = "Firehose writes the archive with its role"
USED_BY_AWS_ON_THE_ROLES_BEHALF = {
    "processor": {
        "logs:CreateLogStream": "Lambda delivers the function's logs with its role",
        "logs:PutLogEvents": "Lambda delivers the function's logs with its role",
        "sqs:ReceiveMessage": "the event source mapping polls the queue with the function's role",
        "sqs:DeleteMessage": "the event source mapping deletes processed records with the function's role",
        "sqs:GetQueueAttributes": "the event source mapping reads the queue with the function's role",
        "sqs:ChangeMessageVisibility": "the event source mapping returns failed records with the function's role",
        "kms:Decrypt": "the services decrypt with the key on the role's behalf (kms:ViaService)",
        "kms:GenerateDataKey": "the services encrypt with the key on the role's behalf (kms:ViaService)",
    },
    "firehose": {
        "s3:AbortMultipartUpload": _FIREHOSE,
        "s3:GetBucketLocation": _FIREHOSE,
        "s3:GetObject": _FIREHOSE,
        "s3:ListBucket": _FIREHOSE,
        "s3:ListBucketMultipartUploads": _FIREHOSE,
        "s3:PutObject": _FIREHOSE,
        "kms:Decrypt": "S3 decrypts with the key on Firehose's behalf (kms:ViaService)",
        "kms:GenerateDataKey": "S3 encrypts with the key on Firehose's behalf (kms:ViaService)",
    },
    "iot-rule": {"sqs:SendMessage": "the topic rule sends with its role (the probe enters at the ingest queue)"},
}


class IamCheckError(TestbedError):
    """The pipeline fails before anything is taken away (the CLI checks IAM is enforced before starting)."""


def used_by_aws(role_kind: str, action: str) -> str | None:
    """Why AWS needs `action` of this role although the emulator never uses it, if it does."""
    return USED_BY_AWS_ON_THE_ROLES_BEHALF.get(role_kind, {}).get(action)


@dataclass(frozen=True)
class ActionVerdict:
    role: str
    role_kind: str  # the role's name after the stack's prefix: processor, firehose, iot-rule
    policy: str
    action: str
    needed: bool
    detail: str  # what failed without it, or why AWS needs it though nothing failed here

    @property
    def finding(self) -> bool:
        """Nothing needed it here and no AWS service uses it on the role's behalf: remove it."""
        return not self.needed and used_by_aws(self.role_kind, self.action) is None


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def without(document: dict[str, Any], action: str) -> dict[str, Any]:
    """The policy document with `action` taken out of every statement (an emptied statement goes)."""
    variant = copy.deepcopy(document)
    statements = []
    for statement in variant["Statement"]:
        kept = [a for a in _actions(statement) if a != action]
        if kept:
            statement["Action"] = kept
            statements.append(statement)
    variant["Statement"] = statements
    return variant


class IamCheck:
    """The stack's role policies, a probe of the pipeline, and the take-one-away loop."""

    def __init__(self, stack: Stack, log: Callable[[str], None] = print) -> None:
        self.stack = stack
        self.outputs = stack.outputs()
        self.iam = stack.client("iam")
        self.lambda_client = stack.client("lambda")
        self.stores = Stores.connect(self.outputs, stack.client, stack.alert_journal)
        self.key = stack.signing_key()
        self.log = log
        self.prefix = f"iot-pipeline-{self.outputs.need('environment_suffix')}-"

    def role_policies(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(role, policy name, document) of every inline policy of the stack's roles."""
        for page in self.iam.get_paginator("list_roles").paginate():
            for role in page["Roles"]:
                name = role["RoleName"]
                if not name.startswith(self.prefix):
                    continue
                for policy in self.iam.list_role_policies(RoleName=name)["PolicyNames"]:
                    document = self.iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
                    yield name, policy, json.loads(document) if isinstance(document, str) else document

    def probe(self, run: int) -> list[str]:
        """A reading to store and archive that raises an alert, and a forged one to quarantine,
        through a fresh worker; what did not happen within the timeout."""
        self.fresh_worker(str(run))
        device = f"iamcheck-{uuid.uuid4().hex[:8]}"
        now = int(time.time() * 1000)
        readings = {"temperature": (60.0, "C")}
        fields: dict[str, Any] = {"device_id": device, "ts": now, "device_type": "environmental", "firmware": "2.1.0"}
        good = new_message(**fields, msg_id=1, readings=readings, key=self.key)
        forged = new_message(**fields, msg_id=2, readings=readings, key=b"not-the-key")
        sqs = self.stack.client("sqs")
        for message in (good, forged):
            sqs.send_message(QueueUrl=self.outputs.ingest_queue_url, MessageBody=json.dumps(message))
        since = time.time() - 1
        outcomes: dict[str, Callable[[], bool]] = {
            "stored": lambda: bool(self.stores.readings(device)),
            "archived": lambda: any(m.get("device_id") == device for m in self.stores.archived_messages(since)),
            "quarantined": lambda: any(device in q["body"] for q in self.stores.quarantined(since)),
            "alerted": lambda: any(a.get("device_id") == device for a in self.stores.drain_alerts(wait_s=1)),
        }
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while outcomes and time.monotonic() < deadline:
            outcomes = {name: seen for name, seen in outcomes.items() if not seen()}
            time.sleep(0.5)
        return sorted(outcomes)

    def fresh_worker(self, nonce: str) -> None:
        """Make the emulator start a new worker for the next batch (see PROBE_VARIABLE)."""
        name = self.outputs.processor_function_name
        config = self.lambda_client.get_function_configuration(FunctionName=name)
        variables = {**config.get("Environment", {}).get("Variables", {}), PROBE_VARIABLE: nonce}
        self.lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": variables})

    def restore_function(self) -> None:
        name = self.outputs.processor_function_name
        config = self.lambda_client.get_function_configuration(FunctionName=name)
        variables = {k: v for k, v in config.get("Environment", {}).get("Variables", {}).items() if k != PROBE_VARIABLE}
        self.lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": variables})

    def run(self) -> list[ActionVerdict]:
        verdicts: list[ActionVerdict] = []
        try:
            missing = self.probe(0)
            if missing:
                raise IamCheckError(
                    f"the pipeline fails with every policy intact (not {', '.join(missing)}): fix that first"
                )
            runs = 0
            for role, policy, document in list(self.role_policies()):
                for action in sorted({a for s in document["Statement"] for a in _actions(s)}):
                    runs += 1
                    self.log(f"{role} / {policy}: without {action}")
                    variant = without(document, action)
                    if variant["Statement"]:
                        self.iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(variant))
                    else:  # its only action: IAM refuses an empty document, so the policy goes
                        self.iam.delete_role_policy(RoleName=role, PolicyName=policy)
                    try:
                        missing = self.probe(runs)
                    finally:
                        self.iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(document))
                    kind = role.removeprefix(self.prefix)
                    detail = (
                        f"without it, not {', '.join(missing)}"
                        if missing
                        else used_by_aws(kind, action) or "nothing failed without it: remove it"
                    )
                    verdicts.append(ActionVerdict(role, kind, policy, action, bool(missing), detail))
        finally:
            self.restore_function()
        return verdicts
