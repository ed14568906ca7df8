"""The bridge's bookkeeping without a broker: what is settled is never acted on again."""

from __future__ import annotations

import json
from typing import Any

from paho.mqtt.enums import MQTTErrorCode

from ingress.actions import backoff
from ingress.bridge import RuleBridge
from ingress.delivery import Item
from ingress.rule import Message
from tests.unit.ingress.fakes import bridge_config


class OneGoodCall:
    """A processor that answers once, then breaks in a way the bridge does not expect."""

    def __init__(self) -> None:
        self.calls = 0

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("unexpected")
        return {"Payload": type("Body", (), {"read": lambda self: json.dumps({"batchItemFailures": []}).encode()})()}


class NoQueue:
    """Direct mode's SQS, here for the DLQ only: these tests refuse nothing, so it is never called."""

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("direct mode sends no batch to SQS")

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError(f"nothing here is dead-lettered: {kwargs}")


def bridge(lambda_client: Any) -> RuleBridge:
    config = bridge_config("direct", rule_name="r", batch_size=10)
    return RuleBridge(config, sqs=NoQueue(), lambda_client=lambda_client, sleep=lambda s: None)


def items(count: int) -> list[Item]:
    return [Item(n + 1, 1, 0, Message("sensors/d/telemetry", b"{}"), body="{}") for n in range(count)]


def test_an_unexpected_error_redelivers_only_what_was_not_handled_yet() -> None:
    runner = bridge(OneGoodCall())
    batch = items(15)  # two invocations: 10, then 5 that fail unexpectedly
    runner.actions.act(batch)
    redelivered = {item.mid for _, _, item in runner.actions.redeliveries}
    assert redelivered == {11, 12, 13, 14, 15}, "the first 10 were acknowledged; they must not come back"
    assert all(item.settled for item in batch[:10]) and runner.metrics.forwarded == 10


def test_backoff_never_overflows_however_long_an_outage_lasts() -> None:
    assert 0 <= backoff(5000) <= 5.0


class PahoMessage:
    """What paho hands `on_message`: a topic, a payload, a QoS and a packet id."""

    def __init__(self, topic: str, payload: bytes, mid: int) -> None:
        self.topic, self.payload, self.qos, self.mid = topic, payload, 1, mid


def test_a_basic_ingest_publish_reaches_the_rule_without_its_prefix_and_outside_from_is_filtered() -> None:
    class Recording(OneGoodCall):
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            self.payload = json.loads(kwargs["Payload"])
            return super().invoke(**kwargs)

    processor = Recording()
    runner = bridge(processor)
    runner.client._packet_queue = lambda *_: MQTTErrorCode.MQTT_ERR_SUCCESS  # type: ignore[method-assign]
    for mid, topic in enumerate(
        ("$aws/rules/r/sensors/d1/telemetry", "$aws/rules/r/elsewhere/d1", "sensors/d2/telemetry")
    ):
        runner._on_message(runner.client, None, PahoMessage(topic, b'{"v": 1}', mid + 1))  # type: ignore[arg-type]
    runner._dispatch(runner._collect())
    assert runner.metrics.filtered == 1, "the rule's FROM applies to what follows $aws/rules/<rule>/"
    assert runner.metrics.forwarded == 2 and processor.calls == 1
