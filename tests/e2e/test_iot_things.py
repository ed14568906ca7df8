"""Provisioning simulated devices through the IoT API (the emulator's here, AWS's for real)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from testbed.iot_things import MANIFEST, deprovision, device_policy, provision
from testbed.stack import Stack

pytestmark = pytest.mark.e2e


def test_things_certificates_and_a_thing_scoped_policy_come_and_go(stack: Stack, tmp_path: Path) -> None:
    iot = stack.client("iot")
    ids = ["prov-00000", "prov-00001", "prov-00002"]
    provision(iot, ids, tmp_path, "test-device-policy", "us-east-1", "000000000000")
    provision(iot, ids, tmp_path, "test-device-policy", "us-east-1", "000000000000")  # idempotent
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert sorted(manifest["things"]) == ids
    for device_id in ids:
        (principal,) = iot.list_thing_principals(thingName=device_id)["principals"]
        assert principal == manifest["things"][device_id]["certificateArn"]
        policies = iot.list_attached_policies(target=principal)["policies"]
        assert [p["policyName"] for p in policies] == ["test-device-policy"]
        der = ssl.PEM_cert_to_DER_cert((tmp_path / f"{device_id}.cert.pem").read_text())
        assert der[0] == 0x30, "a DER-encoded certificate (an ASN.1 SEQUENCE)"
        assert (tmp_path / f"{device_id}.private.key").stat().st_mode & 0o077 == 0, "the key is private"
    document = json.loads(iot.get_policy(policyName="test-device-policy")["policyDocument"])
    assert document == device_policy("us-east-1", "000000000000")
    assert "topic/sensors/${iot:Connection.Thing.ThingName}/telemetry" in document["Statement"][1]["Resource"]

    assert deprovision(iot, tmp_path) == 3
    for device_id in ids:
        with pytest.raises(ClientError):
            iot.describe_thing(thingName=device_id)
    assert not list(tmp_path.iterdir())
