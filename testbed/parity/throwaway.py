"""Throwaway resources for probes and benchmarks: each deletion registered the moment its resource
exists, all run on leaving in reverse order, each on its own (one that fails is logged, the others
still run), so nothing a probe made outlives it, whatever failed in between."""

from __future__ import annotations

import io
import json
import logging
import time
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

RESOURCE_WAIT_S = 20.0
# What a deletion answers when there was nothing to delete (a function that never logged, say).
GONE = frozenset({"ResourceNotFoundException", "NoSuchEntity", "NoSuchBucket", "NoSuchKey"})

# The probe function: records its batch, takes as long as the event source probe's messages say (so
# that concurrent batches overlap), and says when it ran.
# the runtime the probe functions (and the pipeline's processor) name, and the Python AWS runs it on
LAMBDA_RUNTIME = "python3.12"
LAMBDA_RUNTIME_PYTHON = "3.12"
PROBE_HANDLER = """\
import json, platform, time

def handler(event, context):
    started = time.time()
    records = event.get("Records", []) if isinstance(event, dict) else []
    delay = records[0].get("body", "") if records else ""
    if delay.replace(".", "", 1).isdigit():
        time.sleep(float(delay))
    print(json.dumps({"parity_batch": len(records), "start": started, "end": time.time()}))
    return {"records": len(records), "python": platform.python_version()}
"""


def wait_until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every_s)


class Throwaway(ExitStack):
    """The deletions of what a probe made."""

    def delete(self, what: str, call: Callable[[], Any]) -> None:
        def quietly() -> None:
            try:
                call()
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") not in GONE:
                    logger.warning("could not delete the probe's %s: %s", what, error)
            except Exception as error:  # the rest must still be deleted
                logger.warning("could not delete the probe's %s: %s", what, error)

        self.callback(quietly)


def _trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def probe_role(made: Throwaway, iam: Any, name: str, service: str, actions: list[str]) -> str:
    """A role that `service` may assume, allowed `actions`; its ARN."""
    arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=_trust(service))["Role"]["Arn"])
    made.delete(f"role {name}", lambda: iam.delete_role(RoleName=name))
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    made.delete(f"role policy {name}", lambda: iam.delete_role_policy(RoleName=name, PolicyName=name))
    return arn


def _probe_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("probe.py", PROBE_HANDLER)
    return buffer.getvalue()


def probe_function(
    made: Throwaway, lam: Any, logs: Any, name: str, role: str, env: dict[str, str] | None = None
) -> None:
    """The probe function, active; it and its log group go when the probe ends."""
    lam.create_function(
        FunctionName=name,
        Runtime=LAMBDA_RUNTIME,
        Role=role,
        Handler="probe.handler",
        Code={"ZipFile": _probe_zip()},
        Timeout=30,
        **({"Environment": {"Variables": env}} if env else {}),
    )
    made.delete(f"log group of {name}", lambda: logs.delete_log_group(logGroupName=f"/aws/lambda/{name}"))
    made.delete(f"function {name}", lambda: lam.delete_function(FunctionName=name))
    if not wait_until(
        lambda: lam.get_function_configuration(FunctionName=name).get("State", "Active") == "Active", RESOURCE_WAIT_S
    ):
        raise TimeoutError(f"the probe function {name} was not active within {RESOURCE_WAIT_S:g} s")
