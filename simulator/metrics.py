"""`--metrics-port`: the fleet's totals and acknowledgement latency as Prometheus text while it runs."""

from __future__ import annotations

from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from simulator.progress import WorkerProgress
from toolkit.counts import MEANINGS, Count

# The counts of toolkit/counts.py a fleet knows while it runs that only grow: counters of the same names.
LIVE_COUNTS = (Count.PUBLISHES, Count.DUPLICATE_SENDS, Count.ACKNOWLEDGED, Count.REFUSED_CONNECTIONS)

LOOPBACK = "127.0.0.1"


class FleetCollector(Collector):
    """The latest fleet totals (`update` is the run's progress callback), read at each scrape."""

    def __init__(self) -> None:
        self.totals = WorkerProgress.total([])

    def update(self, totals: WorkerProgress) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        t = self.totals
        yield GaugeMetricFamily("simulator_connected", "devices connected now", value=t.connected)
        for count in LIVE_COUNTS:
            yield CounterMetricFamily(f"simulator_{count.value}", MEANINGS[count].text, value=getattr(t, count.value))
        # a failed message is acknowledged later when its duplicate send is: this count can go down
        yield GaugeMetricFamily("simulator_failed", MEANINGS[Count.FAILED].text, value=t.failed)
        yield GaugeMetricFamily("simulator_in_flight", "published, neither acknowledged nor failed", value=t.in_flight)
        yield CounterMetricFamily(
            "simulator_reconnects", "connections the broker dropped and came back", value=t.reconnects
        )
        latency = t.ack_latency
        yield HistogramMetricFamily(
            "simulator_ack_latency_seconds",
            "due time to the broker's acknowledgement",
            buckets=latency.cumulative(),
            sum_value=latency.sum_s,
        )


def serve_metrics(collector: FleetCollector, port: int) -> WSGIServer:
    """Serve /metrics on 127.0.0.1:`port` (0: any free port; the server knows which)."""
    registry = CollectorRegistry()
    registry.register(collector)
    server, _ = start_http_server(port, addr=LOOPBACK, registry=registry)
    return server
