"""Device code written for AWS, unchanged, against the local IoT Core: the AWS IoT Device SDK v2
for Python connects with mTLS (a certificate from the emulator's IoT API, its CA), publishes a
signed message at QoS 1, and the topic rule stores it."""

from __future__ import annotations

import json
import uuid

import pytest
from awscrt import mqtt
from awsiot import mqtt_connection_builder

from simulator.tls import CERT_SUFFIX, KEY_SUFFIX
from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.stack import Stack
from testbed.stores import Stores, wait_for
from tests.conftest import make_message
from tests.e2e.conftest import needs_iot_core
from tests.e2e.test_ingress import backend_of, ingress_mode

pytestmark = pytest.mark.e2e
TIMEOUT_S = 30


def test_the_aws_iot_device_sdk_publishes_through_the_local_iot_core(
    stack: Stack, stores: Stores, signing_key: bytes
) -> None:
    needs_iot_core(stack)
    backend = backend_of(stack)
    with ingress_mode(stack, "iot"):
        device = f"sdk-{uuid.uuid4().hex[:6]}"
        backend.provision_devices([device])
        try:
            publish_and_check(backend, stores, device, signing_key)
        finally:
            backend.release_devices([device])


def publish_and_check(backend: EmbeddedBackend, stores: Stores, device: str, signing_key: bytes) -> None:
    connection = mqtt_connection_builder.mtls_from_path(
        endpoint="localhost",
        port=backend.iot_mqtt_port,
        cert_filepath=str(backend.things_dir / f"{device}{CERT_SUFFIX}"),
        pri_key_filepath=str(backend.things_dir / f"{device}{KEY_SUFFIX}"),
        ca_filepath=str(backend.iot_ca_file()),
        client_id=device,
        clean_session=True,
        keep_alive_secs=30,
    )
    connection.connect().result(TIMEOUT_S)
    try:
        message = make_message(device_id=device, readings={"temperature": (22.5, "C")}, key=signing_key)
        published, _ = connection.publish(
            topic=f"sensors/{device}/telemetry", payload=json.dumps(message), qos=mqtt.QoS.AT_LEAST_ONCE
        )
        published.result(TIMEOUT_S)  # the PUBACK
    finally:
        connection.disconnect().result(TIMEOUT_S)
    item = wait_for("the SDK's reading", lambda: stores.reading(device, message["ts"], 1), 90)
    assert item.readings["temperature"] == 22.5
