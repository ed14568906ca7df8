"""Run every probe against the running stack and show what they found: a table, or JSON."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from telemetry.files import read_bounded
from testbed.parity import probes
from testbed.parity.types import ProbeContext, Row, Verdict

logger = logging.getLogger(__name__)

# a saved result is a few kilobytes; anything far larger is not one
MAX_SAVED_BYTES = 1024 * 1024


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
            "Lambda runtime",
            "Reserved Lambda env keys",
            "Lambda throttling",
            "Lambda payload limit",
            "SQS event source batches",
            "SQS event source concurrency",
            "Metrics behind your alarms",
        ),
        _probe(probes.observe_lambda, probes.judge_lambda),
    ),
    (
        ("IoT policy enforcement", "MQTT payload limit", "IoT Core message broker quotas"),
        _probe(probes.observe_broker, probes.judge_broker),
    ),
    (("Rule SQL",), _probe(probes.observe_rule, probes.judge_rule)),
    (("SQS message size", "DynamoDB item size"), _probe(probes.observe_limits, probes.judge_limits)),
)


def context_of(stack: Any) -> ProbeContext:
    backend = stack.backend
    return ProbeContext(
        client=stack.client,
        outputs=stack.outputs(),
        ingress=backend.ingress_mode() or stack.ingress,
        device_topic=backend.topic,
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


@dataclass(frozen=True)
class Measured:
    """One backend's rows as its last `parity` found them, kept so another backend's table shows them."""

    backend: str
    emulator: str
    measured: str
    rows: tuple[Row, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "rows": [row.as_dict() for row in self.rows]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Measured:
        """A saved result; ValueError when any field is not what `as_dict` writes."""
        texts = ("feature", "aws", "backend", "consequence")
        rows = []
        for r in raw["rows"]:
            if not all(isinstance(r.get(key), str) for key in texts):
                raise ValueError("a row whose fields are not all text")
            rows.append(Row(r["feature"], r["aws"], r["backend"], Verdict(r["verdict"]), r["consequence"]))
        if not all(isinstance(raw.get(key), str) for key in ("backend", "emulator", "measured")):
            raise ValueError("a result whose names are not text")
        return cls(raw["backend"], raw["emulator"], raw["measured"], tuple(rows))


def measured(stack: Any, rows: list[Row]) -> Measured:
    """This run's rows, kept under the emulator's own name (LocalStack in Docker and as a host
    process are two columns, not one)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    emulator = stack.backend.emulator()
    key = re.sub(r"[^a-z0-9.]+", "-", emulator.lower()).strip("-") or stack.backend.name
    return Measured(key, emulator, now, tuple(rows))


def save(result: Measured, folder: Path) -> Path | None:
    """Keep `result` as this emulator's latest (one file each, replaced whole); a disk that refuses is
    warned about, and the table is shown all the same."""
    path = folder / f"{result.backend}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(result.as_dict(), indent=2))
        partial.replace(path)
    except OSError as exc:
        logger.warning("the parity rows were not kept for other backends' tables: %s", exc)
        return None
    return path


def saved_others(folder: Path, backend: str) -> list[Measured]:
    """The other backends' latest results; a file that does not read as one is named and left out."""
    found = []
    for path in sorted(folder.glob("*.json")):
        if path.stem == backend:
            continue
        try:
            found.append(Measured.from_dict(json.loads(read_bounded(path, MAX_SAVED_BYTES))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("left out %s: not a parity result (%s)", path, exc)
    return found


def print_table(result: Measured, console: Console, others: Sequence[Measured] = ()) -> None:
    """This backend's rows; a column for each other backend's latest rows, matched by feature."""
    title = f"What {escape(result.emulator)} does not do that AWS does (each row from a probe that ran)"
    table = Table(title=title, show_lines=True)
    table.add_column("feature", overflow="fold")
    table.add_column("AWS", overflow="fold")
    table.add_column(f"{escape(result.emulator)}, now", overflow="fold")
    for other in others:
        table.add_column(escape(f"{other.emulator}, {other.measured}"), overflow="fold")
    table.add_column("consequence for your results", overflow="fold")
    style = {Verdict.SAME: "green", Verdict.DIFFERS: "yellow", Verdict.UNKNOWN: "dim"}

    def cell(row: Row | None) -> str:
        return "(not probed there)" if row is None else f"[{style[row.verdict]}]{escape(row.backend)}[/]"

    by_feature = [{row.feature: row for row in other.rows} for other in others]
    for row in result.rows:
        theirs = [cell(rows.get(row.feature)) for rows in by_feature]
        table.add_row(escape(row.feature), escape(row.aws), cell(row), *theirs, escape(row.consequence))
    console.print(table)
    for shown in (result, *others):
        differs = sum(r.verdict is Verdict.DIFFERS for r in shown.rows)
        unknown = sum(r.verdict is Verdict.UNKNOWN for r in shown.rows)
        counts = f"{differs} of {len(shown.rows)} behaviours differ from AWS, {unknown} not probed"
        console.print(f"{escape(shown.emulator)}: {counts}")
