"""The bridge's Prometheus metrics (ingress/metrics.py): each counter under its name and meaning,
the queue depth, the lag histogram and the broker's refusals, as a scrape reads them over HTTP."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ingress.bridge import RuleBridge
from ingress.metrics import COUNTERS, BridgeCollector, BrokerRefusalCollector, serve_metrics
from tests.unit.ingress.fakes import FakeLambda, FakeSqs, bridge_config
from tests.unit.ingress.test_broker_refusals import LOG


def bridge() -> RuleBridge:
    runner = RuleBridge(bridge_config(), FakeSqs(), FakeLambda())
    runner.metrics.add(received=5, forwarded=3, filtered=1, rule_errors=2, dead_lettered=2, batches=2)
    runner.metrics.forwarded_after([20.0, 40.0])
    return runner


def samples(text: str) -> dict[str, float]:
    return {
        sample.name
        + (f"{{{','.join(f'{k}={v}' for k, v in sample.labels.items())}}}" if sample.labels else ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_counter_of_the_bridge_is_a_metric_with_its_meaning() -> None:
    families = {family.name: family for family in BridgeCollector(bridge()).collect()}
    assert set(families) == {f"bridge_{name}" for name in COUNTERS} | {"bridge_queue_depth", "bridge_lag_seconds"}
    for name, doc in COUNTERS.items():
        assert families[f"bridge_{name}"].documentation == doc and families[f"bridge_{name}"].type == "counter"
    values = {name: families[name].samples[0].value for name in families if name != "bridge_lag_seconds"}
    assert values["bridge_received"] == 5 and values["bridge_forwarded"] == 5 and values["bridge_filtered"] == 1
    assert values["bridge_rule_errors"] == 2 and values["bridge_dead_lettered"] == 2 and values["bridge_batches"] == 2
    assert values["bridge_queue_depth"] == 0 and families["bridge_queue_depth"].type == "gauge"
    lag = {s.labels.get("le"): s.value for s in families["bridge_lag_seconds"].samples if s.name.endswith("_bucket")}
    assert lag["+Inf"] == 2 and families["bridge_lag_seconds"].type == "histogram"


def test_the_brokers_refusals_are_counted_by_kind_since_the_bridge_started(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_bytes(LOG.encode("latin-1"))
    [family] = BrokerRefusalCollector(log, 1796595300.5).collect()
    assert family.name == "broker_refusals" and family.type == "counter"
    assert {s.labels["kind"]: s.value for s in family.samples} == {"oversize packet": 2, "not authorised": 1}
    [none] = BrokerRefusalCollector(tmp_path / "no.log", 0).collect()
    assert {s.labels["kind"]: s.value for s in none.samples} == {"oversize packet": 0, "not authorised": 0}


def test_a_scrape_over_http_reads_the_bridge_and_the_broker_on_loopback(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text("")
    server = serve_metrics(bridge(), 0, log)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as response:
            found = samples(response.read().decode())
    finally:
        server.shutdown()
        server.server_close()
    assert found["bridge_received_total"] == 5 and found["bridge_lag_seconds_count"] == 2
    assert found["broker_refusals_total{kind=oversize packet}"] == 0
    alone = serve_metrics(bridge(), 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{alone.server_port}/metrics", timeout=10) as response:
            assert "broker_refusals" not in response.read().decode(), "no broker log, no refusal counter"
    finally:
        alone.shutdown()
        alone.server_close()
