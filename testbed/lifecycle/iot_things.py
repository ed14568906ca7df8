"""Provision and remove simulated devices in AWS IoT Core (or an emulator's IoT API).

Each device becomes a thing with its own X.509 certificate; one policy, scoped with the thing
name, lets a device connect only as itself and publish only to `sensors/<thing>/telemetry`.
A manifest in the output folder records what was made, so removal deletes exactly that.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from telemetry.topics import DEVICE_TOPIC_TEMPLATE, DeviceTopic
from testbed.lifecycle.secrets import private_folder

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def device_policy(
    region: str, account: str, partition: str = "aws", device_topic: str = DEVICE_TOPIC_TEMPLATE
) -> dict[str, Any]:
    """Connect as your own thing name, publish to your own telemetry topic: nothing else (a wildcard for
    a rule's Basic Ingest prefix would also match topics of more levels, other devices' ids among them)."""
    prefix = f"arn:{partition}:iot:{region}:{account}"
    own = DeviceTopic(device_topic).pattern("${iot:Connection.Thing.ThingName}")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{prefix}:client/${{iot:Connection.Thing.ThingName}}",
            },
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": f"{prefix}:topic/{own}",
            },
        ],
    }


# IoT Core keeps at most five versions of a policy
POLICY_VERSIONS_MAX = 5


def ensure_policy(iot: Any, name: str, document: dict[str, Any]) -> None:
    """The policy with this document: created, or given a new default version when its document
    changed (another device topic), the oldest other version making room when five exist."""
    try:
        iot.create_policy(policyName=name, policyDocument=json.dumps(document))
        return
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    if json.loads(iot.get_policy(policyName=name)["policyDocument"]) == document:
        return
    versions = iot.list_policy_versions(policyName=name)["policyVersions"]
    if len(versions) >= POLICY_VERSIONS_MAX:
        oldest = min((v for v in versions if not v["isDefaultVersion"]), key=lambda v: int(v["versionId"]))
        iot.delete_policy_version(policyName=name, policyVersionId=oldest["versionId"])
    iot.create_policy_version(policyName=name, policyDocument=json.dumps(document), setAsDefault=True)
    logger.info("policy %s: a new default version for its new document", name)


def provision(
    iot: Any,
    device_ids: list[str],
    out: Path,
    policy_name: str,
    region: str,
    account: str,
    device_topic: str = DEVICE_TOPIC_TEMPLATE,
) -> Path:
    """Create the policy (once), then a thing + active certificate + attachments per device."""
    private_folder(out)  # it holds the devices' private keys
    manifest_path = out / MANIFEST
    manifest: dict[str, Any] = (
        json.loads(manifest_path.read_text()) if manifest_path.exists() else {"policy": policy_name, "things": {}}
    )
    ensure_policy(iot, policy_name, device_policy(region, account, device_topic=device_topic))
    for device_id in device_ids:
        if device_id in manifest["things"]:
            continue
        iot.create_thing(thingName=device_id)
        cert = iot.create_keys_and_certificate(setAsActive=True)
        iot.attach_policy(policyName=policy_name, target=cert["certificateArn"])
        iot.attach_thing_principal(thingName=device_id, principal=cert["certificateArn"])
        (out / f"{device_id}.cert.pem").write_text(cert["certificatePem"])
        key_file = out / f"{device_id}.private.key"
        key_file.write_text(cert["keyPair"]["PrivateKey"])
        key_file.chmod(0o600)
        manifest["things"][device_id] = {
            "certificateArn": cert["certificateArn"],
            "certificateId": cert["certificateId"],
        }
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("%d thing(s) provisioned in %s", len(manifest["things"]), out)
    return manifest_path


def deprovision(iot: Any, out: Path, device_ids: Iterable[str] | None = None) -> int:
    """Delete the manifest's things and certificates (all, or these), and the policy once none is left.

    Returns how many things were removed.
    """
    manifest_path = out / MANIFEST
    if not manifest_path.exists():
        return 0
    manifest = json.loads(manifest_path.read_text())
    chosen = set(manifest["things"]) if device_ids is None else set(device_ids) & set(manifest["things"])
    for device_id in sorted(chosen):
        cert = manifest["things"].pop(device_id)
        arn = cert["certificateArn"]
        iot.detach_thing_principal(thingName=device_id, principal=arn)
        iot.detach_policy(policyName=manifest["policy"], target=arn)
        iot.update_certificate(certificateId=cert["certificateId"], newStatus="INACTIVE")
        iot.delete_certificate(certificateId=cert["certificateId"])
        iot.delete_thing(thingName=device_id)
        for suffix in (".cert.pem", ".private.key"):
            (out / f"{device_id}{suffix}").unlink(missing_ok=True)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    if manifest["things"]:
        return len(chosen)
    try:
        iot.delete_policy(policyName=manifest["policy"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    manifest_path.unlink()
    return len(chosen)
