"""Run every probe against the running stack and show what they found: a table, or JSON."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rich.console import Console
from rich.table import Table

from testbed.parity import probes
from testbed.parity.types import ProbeContext, Row, Verdict

logger = logging.getLogger(__name__)


def _probe(observe: Callable[[ProbeContext], Any], judge: Callable[[Any], Row | list[Row]]) -> Callable[..., list[Row]]:
    def run(ctx: ProbeContext) -> list[Row]:
        judged = judge(observe(ctx))
        return judged if isinstance(judged, list) else [judged]

    return run


# Each probe, the rows it answers (named here so that a probe that fails still shows its rows, as not probed).
PROBES: tuple[tuple[tuple[str, ...], Callable[[ProbeContext], list[Row]]], ...] = (
    (("Firehose buffering", "Firehose GZIP"), _probe(probes.observe_firehose, probes.judge_firehose)),
    (("Metric alarm evaluation",), _probe(probes.observe_alarm, probes.judge_alarm)),
    (
        (
            "Reserved Lambda env keys",
            "Lambda throttling",
            "Lambda payload limit",
            "SQS event source batches",
            "SQS event source concurrency",
            "Metrics behind your alarms",
        ),
        _probe(probes.observe_lambda, probes.judge_lambda),
    ),
    (("IoT policy enforcement", "MQTT payload limit"), _probe(probes.observe_broker, probes.judge_broker)),
    (("Rule SQL",), _probe(probes.observe_rule, probes.judge_rule)),
    (("SQS message size", "DynamoDB item size"), _probe(probes.observe_limits, probes.judge_limits)),
)


def context_of(stack: Any) -> ProbeContext:
    backend = stack.backend
    return ProbeContext(
        client=stack.client,
        outputs=stack.outputs(),
        ingress=backend.ingress_mode() or stack.ingress,
        device_topic=backend.device_topic,
        mqtt_target=backend.mqtt_target,
        provision=backend.provision_devices,
        release=backend.release_devices,
        iam_enforced=backend.iam_enforced,
        name=f"parity-{uuid.uuid4().hex[:8]}",
    )


def run_probes(ctx: ProbeContext, parallel: int = 3) -> list[Row]:
    """Every probe, a few at a time (they mostly wait); each under a name of its own."""

    def one(index: int) -> list[Row]:
        features, probe = PROBES[index]
        own = ProbeContext(**{**vars(ctx), "name": f"{ctx.name}-{index}"})
        try:
            return probe(own)
        except Exception as error:  # a probe that fails says so in its rows; the others still report
            logger.warning("parity probe for %s failed: %s", ", ".join(features), error)
            return [Row(f, "", f"probe failed: {type(error).__name__}: {error}", Verdict.UNKNOWN, "") for f in features]

    with ThreadPoolExecutor(parallel, thread_name_prefix="parity") as pool:
        return [row for rows in pool.map(one, range(len(PROBES))) for row in rows]


def print_table(rows: list[Row], console: Console, backend: str) -> None:
    table = Table(title=f"What {backend} does not do that AWS does (each row from a probe that ran)", show_lines=True)
    for column in ("feature", "AWS", backend, "consequence for your results"):
        table.add_column(column, overflow="fold")
    style = {Verdict.SAME: "green", Verdict.DIFFERS: "yellow", Verdict.UNKNOWN: "dim"}
    for row in rows:
        table.add_row(row.feature, row.aws, f"[{style[row.verdict]}]{row.backend}[/]", row.consequence)
    console.print(table)
    differs = sum(r.verdict is Verdict.DIFFERS for r in rows)
    unknown = sum(r.verdict is Verdict.UNKNOWN for r in rows)
    console.print(f"{differs} of {len(rows)} behaviours differ from AWS, {unknown} not probed")
