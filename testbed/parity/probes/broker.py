"""The device-facing broker: does it check the devices' policy, the payload's size and the publish
rate as AWS IoT Core does?"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ingress.broker import IOT_MAX_PAYLOAD_BYTES
from testbed.parity.probes.common import NONE_HERE
from testbed.parity.types import ProbeContext, Row, Verdict
from toolkit.iot_quotas import PUBLISHES_PER_S_PER_CONNECTION

MQTT_WAIT_S = 5.0
NOT_AUTHORIZED = "Not authorized"
# publishes sent at once on one connection: AWS IoT Core acknowledges at most 100 of them in a second
QUOTA_BURST = 150
# a device waits this long between two CONNECTs with one client id (AWS IoT Core: 1 per second)
CONNECT_INTERVAL_S = 1.1


@dataclass(frozen=True)
class BrokerSeen:
    # what answered a publish to another device's topic, and one over AWS's payload limit to its own
    foreign_topic: str
    oversize: str
    # ministack's IoT Core checks device policies only when the stack enforces IAM
    iam_enforced: bool = True
    # of QUOTA_BURST publishes at once on one connection, how many were acknowledged within a
    # second, and whether the connection stayed (None: not measured)
    burst_acked: int | None = None
    burst_kept_connection: bool = True


def _client(ctx: ProbeContext, device_id: str, protocol: MQTTProtocolVersion) -> mqtt.Client:
    target = ctx.mqtt_target()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=protocol)
    if target.tls is not None:
        client.tls_set_context(target.tls.context(device_id))
    if target.credentials is not None:
        client.username_pw_set(*target.credentials(device_id))
    return client


def _publish_outcome(
    ctx: ProbeContext, device_id: str, topic: str, payload: bytes, protocol: MQTTProtocolVersion
) -> str:
    """'accepted', 'refused (...)' or 'no answer': the broker's answer to one QoS 1 publish."""
    answers: list[str] = []
    answered = threading.Event()
    connected = threading.Event()
    closing = threading.Event()  # our own DISCONNECT is not the broker's answer

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            answers.append(f"connection refused ({reason})")
            answered.set()
        connected.set()

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        answers.append(f"refused (PUBACK {reason})" if reason.is_failure else "accepted")
        answered.set()

    def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not closing.is_set():
            answers.append(f"refused (disconnected: {reason})")
            answered.set()

    client = _client(ctx, device_id, protocol)
    client.on_connect, client.on_publish, client.on_disconnect = on_connect, on_publish, on_disconnect
    target = ctx.mqtt_target()
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        if not connected.wait(MQTT_WAIT_S):
            return "no answer to CONNECT"
        if not answers:
            client.publish(topic, payload, qos=1)
        answered.wait(MQTT_WAIT_S)
        return answers[0] if answers else "no answer"
    finally:
        closing.set()
        client.disconnect()
        client.loop_stop()


def _burst_outcome(ctx: ProbeContext, device_id: str, topic: str) -> tuple[int | None, bool]:
    """QUOTA_BURST QoS 1 publishes at once: how many PUBACKs came within a second (None: no
    connection), and whether the connection was still up then."""
    acked: list[float] = []
    connected = threading.Event()
    client = _client(ctx, device_id, mqtt.MQTTv311)
    client.max_inflight_messages_set(0)  # every publish leaves at once: the broker, not paho, decides
    client.on_connect = lambda *_: connected.set()
    client.on_publish = lambda *_: acked.append(time.monotonic())
    target = ctx.mqtt_target()
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        if not connected.wait(MQTT_WAIT_S):
            return None, False
        started = time.monotonic()
        for n in range(QUOTA_BURST):
            client.publish(topic, b'{"parity": "burst", "n": %d}' % n, qos=1)
        time.sleep(1.5)
        return sum(1 for at in acked if at - started <= 1.0), client.is_connected()
    finally:
        client.disconnect()
        client.loop_stop()


# The probe devices keep their names from run to run: a local broker keeps a device's password.
PROBE_SENDER, PROBE_OTHER, PROBE_BURST = "parity-probe-a", "parity-probe-b", "parity-probe-c"
# A rule that does not exist: what devices publish to its Basic Ingest topics reaches no rule of the
# stack (AWS checks the device's policy and the payload's size all the same), so the probes leave
# nothing in its queues, its dead-letter queue or its quarantine.
ABSENT_RULE = "parity_probe_absent_rule"


def observe_broker(ctx: ProbeContext) -> BrokerSeen:
    """One probe device publishes to the other's topic, then over the size limit to its own."""
    try:
        ctx.provision([PROBE_SENDER, PROBE_OTHER, PROBE_BURST])

        def topic(device_id: str) -> str:
            return replace(ctx.device_topic, basic_ingest_rule=ABSENT_RULE).for_device(device_id)

        foreign = _publish_outcome(ctx, PROBE_SENDER, topic(PROBE_OTHER), b'{"parity": "foreign"}', mqtt.MQTTv5)
        time.sleep(CONNECT_INTERVAL_S)  # the same client id again: AWS takes one CONNECT a second
        oversize = b"x" * (IOT_MAX_PAYLOAD_BYTES + 1)
        too_large = _publish_outcome(ctx, PROBE_SENDER, topic(PROBE_SENDER), oversize, mqtt.MQTTv5)
        burst_acked, kept = _burst_outcome(ctx, PROBE_BURST, topic(PROBE_BURST))
    finally:
        ctx.release([PROBE_SENDER, PROBE_OTHER, PROBE_BURST])
    return BrokerSeen(foreign, too_large, ctx.iam_enforced, burst_acked, kept)


def _answer_row(feature: str, aws: str, answer: str, consequence: str) -> Row:
    """A broker's answer: refused is what AWS does; accepted differs; anything else is unknown."""
    if answer.startswith("refused"):
        return Row(feature, aws, answer, Verdict.SAME, NONE_HERE)
    return Row(feature, aws, answer, Verdict.DIFFERS if answer == "accepted" else Verdict.UNKNOWN, consequence)


def judge_broker(seen: BrokerSeen) -> list[Row]:
    return [
        _answer_row(
            "IoT policy enforcement",
            "the device's IoT policy refuses a publish to another device's topic",
            seen.foreign_topic,
            "a device can publish as another here: a policy mistake does not show"
            + ("" if seen.iam_enforced else " (IAM is not enforced on this stack: IAM=enforce checks more)"),
        ),
        _answer_row(
            "MQTT payload limit",
            f"refuses an MQTT payload over {IOT_MAX_PAYLOAD_BYTES // 1024} KB",
            # the device's policy refused it before its size counted: no answer about the size
            seen.oversize.replace("refused", "policy refused", 1) if NOT_AUTHORIZED in seen.oversize else seen.oversize,
            "a device's publish that AWS refuses succeeds here: a device-side size bug does not show "
            "(on its rule's topic, the rule bridge dead-letters the payload, naming its size)",
        ),
        _quota_row(seen),
    ]


def _quota_row(seen: BrokerSeen) -> Row:
    aws = (
        f"acknowledges at most {PUBLISHES_PER_S_PER_CONNECTION} publishes a second per connection and throttles "
        "the rest (no PUBACK, the connection kept); 1 CONNECT a second per client id, 512 KiB a second per "
        "connection, 20,000 publishes a second per account"
    )
    feature = "IoT Core message broker quotas"
    if seen.burst_acked is None:
        return Row(feature, aws, "no answer to CONNECT", Verdict.UNKNOWN, "")
    found = f"{seen.burst_acked} of {QUOTA_BURST} publishes at once acknowledged within a second"
    found += ", the connection kept" if seen.burst_kept_connection else ", the connection closed"
    if seen.burst_acked <= PUBLISHES_PER_S_PER_CONNECTION and seen.burst_kept_connection:
        return Row(feature, aws, found + " (the quota gate: AWS_QUOTAS=on)", Verdict.SAME, NONE_HERE)
    verdict = Verdict.DIFFERS if seen.burst_acked == QUOTA_BURST else Verdict.UNKNOWN
    return Row(
        feature,
        aws,
        found,
        verdict,
        "a device that publishes faster than AWS allows is acknowledged here: `AWS_QUOTAS=on` (or a scenario's "
        "`aws_quotas`) puts the quota gate in front of the broker",
    )
