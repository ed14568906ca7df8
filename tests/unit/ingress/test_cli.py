"""`python -m ingress`: the compose health check of the rule bridge, and what the bridge refuses to start on."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "No such file"), ("not json", "Expecting value"), ("{}", "stack outputs missing")],
)
def test_the_bridge_refuses_outputs_it_cannot_read_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str | None, problem: str
) -> None:
    outputs = tmp_path / "outputs.json"
    if content is not None:
        outputs.write_text(content)
    secret = tmp_path / "secret"
    assert main(["bridge", "--outputs", str(outputs), "--secret-file", str(secret)]) == 2
    assert f"cannot read the stack's outputs from {outputs}" in caplog.text and problem in caplog.text
