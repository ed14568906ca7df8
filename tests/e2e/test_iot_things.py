"""Provisioning simulated devices through the IoT API (the emulator's here, AWS's for real)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from simulator.summary import acked_ids
from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.iot_things import MANIFEST, deprovision, device_policy, provision
from testbed.lifecycle.ports import LOOPBACK
from testbed.lifecycle.stack import Stack
from testbed.paths import ROOT
from testbed.stores import Stores, wait_for
from tests.e2e.conftest import needs_iot_core

pytestmark = pytest.mark.e2e


def test_things_certificates_and_a_thing_scoped_policy_come_and_go(stack: Stack, tmp_path: Path) -> None:
    needs_iot_core(stack)
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

    assert deprovision(iot, tmp_path, ["prov-00001", "not-ours"]) == 1, "a run releases only its own devices"
    assert sorted(json.loads((tmp_path / MANIFEST).read_text())["things"]) == ["prov-00000", "prov-00002"]
    assert iot.get_policy(policyName="test-device-policy"), "the policy stays while things use it"
    with pytest.raises(ClientError):
        iot.describe_thing(thingName="prov-00001")
    assert deprovision(iot, tmp_path) == 2
    for device_id in ids:
        with pytest.raises(ClientError):
            iot.describe_thing(thingName=device_id)
    assert not list(tmp_path.iterdir())


def test_a_provisioned_fleet_publishes_over_tls_with_its_certificates(
    stack: Stack, stores: Stores, signing_key: bytes, tmp_path: Path
) -> None:
    """The user's path on AWS, against the emulator: provision the fleet, run it over X.509, remove it."""
    needs_iot_core(stack)
    backend = stack.backend
    assert isinstance(backend, EmbeddedBackend)
    prefix = f"x509{uuid.uuid4().hex[:6]}"
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(f"devices:\n  - {{type: power_meter, count: 3, interval_s: 0.5, id_prefix: {prefix}}}\n")
    env = {
        **os.environ,
        "MINISTACK_PORT": str(backend.ministack_port),
        "MQTT_PORT": str(backend.mqtt_port),
        "IOT_MQTT_PORT": str(backend.iot_mqtt_port),
        "EMBEDDED_STATE_DIR": str(backend.state_dir),
        "SIMULATOR_SIGNING_KEY": signing_key.decode(),
    }

    def cli(*args: str) -> None:
        subprocess.run([sys.executable, "-m", *args], env=env, check=True, cwd=ROOT, capture_output=True)

    cli("testbed", "provision", "--fleet", str(fleet_file), "--prefix", prefix)
    certs = backend.state_dir / "things" / prefix
    summary_file = tmp_path / "summary.json"
    cli(
        "simulator",
        "run",
        "--fleet",
        str(fleet_file),
        "--duration",
        "2",
        "--broker",
        f"{LOOPBACK}:{backend.iot_mqtt_port}",
        "--certs",
        str(certs),
        "--ca-file",
        str(backend.iot_ca_file()),
        "--summary",
        str(summary_file),
    )
    summary = json.loads(summary_file.read_text())
    assert summary["failed"] == 0 and summary["acknowledged"] == summary["publishes"] >= 3 * 3
    acked = acked_ids(summary)
    assert wait_for(
        "the fleet's messages, via the emulator's topic rule",
        lambda: set(stores.stored_ids(summary["per_device"])) == acked or None,
        60,
    )

    cli("testbed", "deprovision", "--prefix", prefix)
    assert not certs.exists() or not list(certs.iterdir())
    with pytest.raises(ClientError):
        stack.client("iot").describe_thing(thingName=f"{prefix}-00000")
