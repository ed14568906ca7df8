"""`--metrics-port`: the bridge's counters, queue depth and lag as Prometheus text while it runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ingress.bridge import RuleBridge
from ingress.broker import LOOPBACK, REFUSALS, count_refusals

COUNTERS = {
    "received": "MQTT messages the bridge received",
    "forwarded": "messages the rule's action delivered",
    "filtered": "messages the rule's WHERE clause dropped",
    "rule_errors": "messages the rule could not evaluate (sent to the error action)",
    "action_errors": "messages the action refused for good (sent to the error action)",
    "retried": "deliveries tried again after a transient failure",
    "dead_lettered": "error-action documents written to the dead-letter queue",
    "dropped_qos0": "QoS 0 messages dropped with the buffer full",
    "reconnects": "reconnections to the broker",
    "sessions_lost": "reconnections that found the session gone",
    "batches": "batches handed to the action",
}


class BridgeCollector(Collector):
    """Reads the bridge's live counters at each scrape."""

    def __init__(self, bridge: RuleBridge) -> None:
        self.bridge = bridge

    def collect(self) -> Iterator[Metric]:
        snapshot = self.bridge.metrics.snapshot()
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"bridge_{name}", doc, value=snapshot[name])
        yield GaugeMetricFamily("bridge_queue_depth", "received and not yet acted on", value=self.bridge.queued())
        lag = self.bridge.metrics.lag_histogram()
        yield HistogramMetricFamily(
            "bridge_lag_seconds", "MQTT receive to the action's success", buckets=lag.cumulative(), sum_value=lag.sum_s
        )


class BrokerRefusalCollector(Collector):
    """What the broker refused since the bridge started, counted from the broker's log at each scrape
    (a refused client never reaches the bridge: the broker's log is the only trace)."""

    def __init__(self, log: Path, since_s: float) -> None:
        self.log, self.since_s = log, since_s

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "broker_refusals", "what the broker refused (a packet over its limit, a wrong password)", labels=["kind"]
        )
        counted = count_refusals(self.log, self.since_s)
        for kind in REFUSALS:
            family.add_metric([kind], counted.get(kind, 0))
        yield family


def serve_metrics(bridge: RuleBridge, port: int, broker_log: Path | None = None) -> WSGIServer:
    """Serve /metrics on 127.0.0.1:`port` (0: any free port; the server knows which); with the
    broker's log, its refusals too."""
    registry = CollectorRegistry()
    registry.register(BridgeCollector(bridge))
    if broker_log is not None:
        registry.register(BrokerRefusalCollector(broker_log, time.time()))
    server, _ = start_http_server(port, addr=LOOPBACK, registry=registry)
    return server
