"""Live metrics: the simulator (its --metrics-port) and the bridge serve Prometheus text while a run
goes, scraped during the run against a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from ingress.__main__ import build_parser as bridge_parser
from ingress.broker import MAX_PACKET_BYTES
from ingress.metrics import serve_metrics
from simulator.cli import KEY_ENV
from simulator.devices import device_ids
from simulator.fleet import load_fleet
from telemetry.credentials import broker_credentials
from testbed.lifecycle.ports import LOOPBACK, free_port
from testbed.paths import ROOT
from tests.e2e.test_bridge_broker import SECRET, Broker, start_bridge
from tests.unit.ingress.fakes import FakeLambda, FakeSqs

pytestmark = pytest.mark.e2e
FLEET = "devices:\n  - {type: power_meter, count: 5, interval_s: 0.1, id_prefix: live}\n"
RUN_S = 8
WAIT_S = 20.0

Samples = dict[str, float]


def scrape(port: int) -> Samples:
    """Every sample of /metrics, by name with its labels (a histogram bucket: name{le=...})."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def scrape_until(port: int, what: str, holds: Callable[[Samples], bool]) -> Samples:
    deadline, last = time.monotonic() + WAIT_S, {}
    while time.monotonic() < deadline:
        try:
            last = scrape(port)
        except OSError:  # not serving yet
            last = {}
        if last and holds(last):
            return last
        time.sleep(0.25)
    pytest.fail(f"{what} within {WAIT_S:.0f} s; last scrape: {last}")


def test_the_simulator_and_the_bridge_serve_their_metrics_during_a_run(tmp_path: Path) -> None:
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(FLEET)
    devices = device_ids(load_fleet(fleet_file))
    broker = Broker(tmp_path / "broker")
    broker.start(devices)
    secret_file = tmp_path / "broker-secret"
    secret_file.write_bytes(SECRET)
    sqs, lam = FakeSqs(), FakeLambda()
    bridge = start_bridge(broker, sqs, lam)
    bridge_server = serve_metrics(bridge.bridge, 0, broker.log)
    simulator_port = free_port()
    run = subprocess.Popen(
        [
            sys.executable, "-m", "simulator", "run", "--fleet", str(fleet_file), "--duration", str(RUN_S),
            "--broker", f"{LOOPBACK}:{broker.port}", "--broker-secret-file", str(secret_file),
            "--metrics-port", str(simulator_port),
        ],
        env={**os.environ, KEY_ENV: "live-metrics-key"},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        during = scrape_until(
            simulator_port,
            "the simulator's published and acknowledged counters moving",
            lambda s: s.get("simulator_acknowledged_total", 0) > 0 and s["simulator_connected"] == len(devices),
        )
        assert during["simulator_publishes_total"] >= during["simulator_acknowledged_total"]
        assert during["simulator_failed"] == 0 and during["simulator_reconnects_total"] == 0
        assert "simulator_in_flight" in during
        assert during["simulator_ack_latency_seconds_count"] == during["simulator_ack_latency_seconds_bucket{le=+Inf}"]
        assert during["simulator_ack_latency_seconds_count"] > 0
        assert run.poll() is None, "scraped while the run went on"
        seen = scrape_until(
            bridge_server.server_port,
            "the bridge forwarding",
            lambda s: s.get("bridge_forwarded_total", 0) > 0 and s.get("bridge_lag_seconds_count", 0) > 0,
        )
        assert seen["bridge_received_total"] >= seen["bridge_forwarded_total"]
        assert seen["bridge_batches_total"] > 0 and "bridge_queue_depth" in seen
        assert seen["bridge_rule_errors_total"] == seen["bridge_action_errors_total"] == 0
        assert seen["bridge_lag_seconds_bucket{le=+Inf}"] == seen["bridge_lag_seconds_count"]
        assert seen["broker_refusals_total{kind=oversize packet}"] == 0
        # a device sends a packet over the broker's limit: it is disconnected, and the count says so
        oversize = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=devices[0])
        oversize.username_pw_set(*broker_credentials(SECRET)(devices[0]))
        oversize.connect(LOOPBACK, broker.port)
        oversize.loop_start()
        oversize.publish(f"sensors/{devices[0]}/telemetry", b"x" * (MAX_PACKET_BYTES + 1), qos=1)
        scrape_until(
            bridge_server.server_port,
            "the broker's refusal counted",
            lambda s: s.get("broker_refusals_total{kind=oversize packet}", 0) == 1,
        )
        oversize.loop_stop()
        _, stderr = run.communicate(timeout=RUN_S + 60)
        assert run.returncode == 0, stderr.decode()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        bridge_server.shutdown()
        bridge_server.server_close()
        bridge.stop()
        broker.stop()
    with pytest.raises(OSError):
        scrape(simulator_port)  # the simulator's server ended with its run


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_a_metrics_port_that_is_no_port_is_refused(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bridge_parser().parse_args(["bridge", "--outputs", "o.json", "--secret-file", "s", "--metrics-port", port])
    assert "--metrics-port" in capsys.readouterr().err
