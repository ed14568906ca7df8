"""A run's checks and its report: report.json, and the run folder that holds it beside report.md,
the HTML page, junit.xml and the plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import numpy as np

from simulator.summary import RunSummary, percentiles
from testbed.runs.hops import ACK_HOP, ARCHIVE_HOP, HOPS
from testbed.runs.html_report import verdict, write_html
from testbed.runs.plots import plot_hops, plot_lag, plot_latency, plot_throughput
from testbed.runs.quota_account import QuotaAccount
from testbed.runs.reconcile import PlanCheck, Reconciliation, run_counts
from testbed.runs.report_files import write_junit, write_markdown
from testbed.runs.scenario import Scenario
from toolkit.counts import Count, label, sums


@dataclass(frozen=True)
class RunOutcome:
    """What a scenario run measured: the input of its checks and of its report."""

    run_id: str
    scenario: Scenario
    ingress: str
    started: float  # epoch s
    summary: RunSummary
    result: Reconciliation
    alert_check: dict[str, Any]
    alerts: int
    drained: bool
    stored_at_s: np.ndarray  # when each reading of the run was stored
    latency_ms: np.ndarray  # device timestamp to stored, per reading
    emulator_rss_mb: float | None
    faults: list[dict[str, Any]]  # one entry per injected fault
    plan: PlanCheck  # the published ids against the run's plan
    # what the broker refused during the run, by kind (a packet too large, a wrong password)
    broker_refusals: dict[str, int]
    # what served the AWS APIs (the emulator and its version, or AWS)
    emulator: str
    # why the run's stores could not be read: the emulator stopped during it and kept nothing (or None)
    emulator_lost: str | None = None
    # stopped early by the user (Ctrl-C): the report covers what was published until then
    interrupted: bool = False
    # what the same traffic would cost on AWS (testbed/cost), or {"error": why it could not be counted}
    cost: dict[str, Any] = field(default_factory=dict)
    # milliseconds per hop (HOPS), per stored reading whose item times them
    hops_ms: dict[str, np.ndarray] = field(default_factory=dict)
    # a run of shards (testbed/runs/shards.py): which were merged, what the missing ones would have sent
    shards: dict[str, Any] | None = None
    # where the report came from (testbed/runs/provenance.py): versions, commit, seed, fleet hash
    provenance: dict[str, Any] = field(default_factory=dict)
    # AWS IoT Core's quotas at the local broker: what the quota gate refused, per device (or None)
    quotas: QuotaAccount | None = None

    @property
    def hop_latency_ms(self) -> dict[str, dict[str, float]]:
        """Percentiles of each hop; the broker's acknowledgement as the simulator measured it."""
        hops = {
            hop: percentiles(list(self.hops_ms[hop] / 1000))
            for hop in (*HOPS, ARCHIVE_HOP)
            if len(self.hops_ms.get(hop, ()))
        }
        return {ACK_HOP: {**percentiles([]), **self.summary["ack_latency_ms"]}, **hops}

    @property
    def slowest_hop(self) -> str | None:
        """The hop of the reading's path to its store with the highest p95 (None when no item timed its
        hops); the archive is off that path, and on AWS its buffer would always win."""
        timed = {hop: p["p95"] for hop, p in self.hop_latency_ms.items() if hop in HOPS}
        return max(timed, key=lambda hop: timed[hop]) if timed else None

    @property
    def latency_percentiles(self) -> dict[str, float]:
        return percentiles(list(self.latency_ms / 1000)) if len(self.latency_ms) else percentiles([])

    @property
    def throughput_msg_s(self) -> float:
        span = float(self.stored_at_s.max() - self.stored_at_s.min()) if len(self.stored_at_s) > 1 else 0.0
        return round(len(self.stored_at_s) / span, 1) if span else 0.0

    @property
    def counts(self) -> dict[str, int]:
        """The run's counts (toolkit/counts.py), by key."""
        throttled = self.quotas.throttled_publishes if self.quotas is not None else 0
        return run_counts(self.plan, self.summary, self.result, throttled)

    @property
    def acknowledged_ratio(self) -> float:
        """Acknowledged messages per message published (acknowledged or failed): duplicate sends are
        not messages of their own."""
        counts = self.counts
        published = counts[Count.ACKNOWLEDGED] + counts[Count.FAILED]
        return counts[Count.ACKNOWLEDGED] / published if published else 0.0


class Check(NamedTuple):
    """One expectation of a scenario: whether it held, and what the run measured against it."""

    held: bool
    measured: str


def _ids(ids: Sequence[str], shown: int = 10) -> str:
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def checks(outcome: RunOutcome) -> dict[str, Check]:
    """Each of the scenario's expectations, named as the report shows it, whether it held and why."""
    expect, summary, result = outcome.scenario.expectations, outcome.summary, outcome.result
    counts = outcome.counts
    added = sums(counts)
    lost = [f"{d}:{m}" for d, m in result.lost]
    unexplained = [str(u.get("id")) for u in result.unexplained]
    plan = outcome.plan
    missing = [f"{d}:{m}" for d, m in plan.not_published]
    unplanned = [f"{d}:{m}" for d, m in plan.unplanned]
    held = {
        "ran to the end": Check(
            not outcome.interrupted,
            "interrupted (Ctrl-C): what was published until then is accounted below"
            if outcome.interrupted
            else "it did",
        ),
        "the emulator ran through the run": Check(outcome.emulator_lost is None, outcome.emulator_lost or "it did"),
        "every planned message published": Check(
            plan.ok,
            f"{plan.published:,} of {plan.planned:,} planned messages published"
            + (f"; {len(missing):,} never published: {_ids(missing)}" if missing else "")
            + (f"; {len(unplanned):,} published that no plan holds: {_ids(unplanned)}" if unplanned else ""),
        ),
        f"drained within {outcome.scenario.drain_timeout_s:g} s": Check(
            outcome.drained, "every message accounted for" if outcome.drained else "still arriving at the timeout"
        ),
        f"{label(Count.UNACCOUNTED)} <= {expect.max_lost}": Check(
            len(lost) <= expect.max_lost,
            f"{len(lost)} {label(Count.UNACCOUNTED)} (lost)" + (f": {_ids(lost)}" if lost else ""),
        ),
        f"unexplained <= {expect.max_unexplained}": Check(
            len(unexplained) <= expect.max_unexplained,
            f"{len(unexplained)} unexplained" + (f": {_ids(unexplained)}" if unexplained else ""),
        ),
        f"{label(Count.FAILED)} <= {expect.max_publish_failures}": Check(
            counts[Count.FAILED] <= expect.max_publish_failures,
            f"{counts[Count.FAILED]:,} {label(Count.FAILED)}; failed publishes by cause: "
            f"{dict(summary['failed_by_cause'])}",
        ),
        f"{label(Count.ACKNOWLEDGED)} >= {expect.min_acked_ratio * 100:g}% of the messages published": Check(
            outcome.acknowledged_ratio >= expect.min_acked_ratio,
            f"{outcome.acknowledged_ratio:.2%} ({counts[Count.ACKNOWLEDGED]:,} of "
            f"{counts[Count.ACKNOWLEDGED] + counts[Count.FAILED]:,}; {counts[Count.DUPLICATE_SENDS]:,} "
            f"{label(Count.DUPLICATE_SENDS)} apart)",
        ),
        "the counts add up": Check(
            all(added.values()),
            "; ".join(f"{equation}: {'yes' if ok else 'NO'}" for equation, ok in added.items()),
        ),
    }
    if outcome.faults or outcome.scenario.faults:
        planned = len(outcome.scenario.faults)
        errors = [f"{f['fault']}: {f['error']}" for f in outcome.faults if f["error"] is not None]
        held[f"all {planned} faults injected"] = Check(
            len(outcome.faults) == planned and not errors,
            f"{len(outcome.faults)} of {planned} injected" + (f"; {'; '.join(errors)}" if errors else ""),
        )
        stuck = [f["fault"] for f in outcome.faults if f["recovered_after_s"] is None]
        held["stored throughput recovered after every fault"] = Check(
            not stuck, f"not recovered after: {', '.join(stuck)}" if stuck else "recovered after each"
        )
        api = [f for f in outcome.faults if f.get("calls") is not None]
        if api:
            # a rule that matched nothing tested nothing: a misspelt operation must not pass quietly
            idle = [f["fault"] for f in api if not f["calls"]["matched"]]
            held["every API fault matched calls"] = Check(
                not idle,
                f"matched no call: {', '.join(idle)}"
                if idle
                else "; ".join(
                    f"{f['fault']}: {f['calls']['matched']:,} calls matched, {f['calls']['failed']:,} failed, "
                    f"{f['calls']['retried']:,} retried"
                    for f in api
                ),
            )
    if outcome.shards is not None:
        missing = outcome.shards["missing"]
        held[f"all {outcome.shards['count']} shards merged"] = Check(
            not missing,
            "; ".join(
                f"shard {m['shard']} missing ({m['reason']}): {m['devices']} devices, {m['planned_messages']} "
                f"messages planned, {m['stored_anyway']} of them stored anyway"
                for m in missing
            )
            or f"{len(outcome.shards['merged'])} merged",
        )
    if expect.max_p99_latency_ms is not None:
        p99 = outcome.latency_percentiles["p99"]
        held[f"p99 latency <= {expect.max_p99_latency_ms:g} ms"] = Check(
            p99 <= expect.max_p99_latency_ms, f"p99 {p99:g} ms"
        )
    if expect.min_throughput_msg_s is not None:
        held[f"throughput >= {expect.min_throughput_msg_s:g} msg/s"] = Check(
            outcome.throughput_msg_s >= expect.min_throughput_msg_s, f"{outcome.throughput_msg_s:g} msg/s"
        )
    if expect.alerts_ok:
        held["alerts match breaches, cooldown held"] = Check(
            bool(outcome.alert_check["ok"]), json.dumps(outcome.alert_check)[:500]
        )
    if expect.max_emulator_rss_mb is not None and outcome.emulator_rss_mb is not None:
        held[f"emulator RSS <= {expect.max_emulator_rss_mb:g} MB"] = Check(
            outcome.emulator_rss_mb <= expect.max_emulator_rss_mb, f"{outcome.emulator_rss_mb:g} MB"
        )
    return held


def report_of(outcome: RunOutcome) -> dict[str, Any]:
    """report.json: the headline figures, every check, and the reconciliation behind them."""
    summary, result = outcome.summary, outcome.result
    held = checks(outcome)
    return {
        "run_id": outcome.run_id,
        "provenance": outcome.provenance,
        "scenario": outcome.scenario.name,
        "started": datetime.fromtimestamp(outcome.started, UTC).isoformat(),
        "duration_s": outcome.scenario.duration_s,
        "ingress": outcome.ingress,
        "emulator": outcome.emulator,
        "emulator_lost": outcome.emulator_lost,
        "interrupted": outcome.interrupted,
        "basic_ingest": outcome.scenario.basic_ingest,
        "qos": outcome.scenario.qos,
        "counts": outcome.counts,
        "sums": sums(outcome.counts),
        "acknowledged_ratio": round(outcome.acknowledged_ratio, 6),
        "failed_by_cause": summary["failed_by_cause"],
        "reconnects": summary["reconnects"],
        "broker_refusals": outcome.broker_refusals,
        "alerts": outcome.alerts,
        "throughput_msg_s": outcome.throughput_msg_s,
        "e2e_latency_ms": outcome.latency_percentiles,
        "hop_latency_ms": outcome.hop_latency_ms,
        "slowest_hop": outcome.slowest_hop,
        **({"shards": outcome.shards} if outcome.shards is not None else {}),
        "send_lateness_ms": summary["send_lateness_ms"],
        "emulator_rss_mb": outcome.emulator_rss_mb,
        "checks": {name: check.held for name, check in held.items()},
        "measured": {name: check.measured for name, check in held.items()},
        "passed": all(check.held for check in held.values()),
        "reconciliation": result.as_dict(),
        "plan": outcome.plan.as_dict(),
        "alert_check": outcome.alert_check,
        "faults_injected": outcome.faults,
        "aws_quotas": outcome.quotas.as_dict() if outcome.quotas is not None else None,
        "cost": outcome.cost,
    }


def write_report(folder: Path, outcome: RunOutcome) -> dict[str, Any]:
    """report.json, report.md and the three plots of one run, in `folder`; returns the report."""
    report = report_of(outcome)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    marks = [(f["started"], f["started"] + f["back_after_s"], f["fault"]) for f in outcome.faults]
    title = f"{report['scenario']} {verdict(report)}"
    plot_throughput(folder / "throughput.png", outcome.summary["sent_per_s"], outcome.stored_at_s, marks, title)
    latency = report["e2e_latency_ms"]
    marks_ms = {k: latency[k] for k in ("p50", "p95", "p99")}
    plot_latency(folder / "latency.png", outcome.latency_ms, marks_ms, title)
    plot_lag(folder / "lag.png", outcome.stored_at_s, outcome.latency_ms, title)
    plot_hops(folder / "hops.png", report["hop_latency_ms"], title)
    write_markdown(folder / "report.md", report)
    write_junit(folder / "junit.xml", report)
    write_html(folder, report)
    return report
