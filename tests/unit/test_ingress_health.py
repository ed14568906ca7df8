"""`python -m ingress health`, the compose health check of the rule bridge."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ingress.__main__ import HEALTHY_METRICS_AGE_S, main


def test_a_bridge_that_wrote_its_counters_lately_is_healthy(tmp_path: Path) -> None:
    metrics = tmp_path / "bridge-metrics.json"
    metrics.write_text('{"received": 1}')
    assert main(["health", "--metrics-file", str(metrics)]) == 0


def test_stale_or_missing_counters_are_unhealthy(tmp_path: Path) -> None:
    metrics = tmp_path / "bridge-metrics.json"
    assert main(["health", "--metrics-file", str(metrics)]) == 1
    metrics.write_text('{"received": 1}')
    old = time.time() - HEALTHY_METRICS_AGE_S - 5
    os.utime(metrics, (old, old))
    assert main(["health", "--metrics-file", str(metrics)]) == 1
    assert main(["health", "--metrics-file", str(metrics), "--max-age", "60"]) == 0
