"""The run folder: report.json, a short report.md and PNG plots."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from xml.etree import ElementTree

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from simulator.summary import RunSummary, percentiles
from testbed.runs.html_report import verdict, write_html
from testbed.runs.reconcile import PlanCheck, Reconciliation
from testbed.runs.scenario import Scenario


def per_second(stored_at_s: np.ndarray, first: int, last: int) -> np.ndarray:
    """Items stored in each second from `first` to `last`: a second in which nothing was stored is a
    zero, not a gap the line is drawn straight across (an outage must show as one)."""
    counts = np.zeros(max(last - first + 1, 0), dtype=int)
    if len(stored_at_s):
        seconds = stored_at_s.astype(int) - first
        inside = seconds[(seconds >= 0) & (seconds < len(counts))]
        np.add.at(counts, inside, 1)
    return counts


def plot_throughput(
    path: Path,
    sent_per_s: dict[str, int],
    stored_at_s: np.ndarray,
    faults: Sequence[tuple[float, float, str]] = (),
    title: str = "",
) -> None:
    """Published and stored per second; each fault is a shaded span from its start until the part was back."""
    sent = {int(k): v for k, v in sent_per_s.items()}
    stored_seconds = [int(stored_at_s.min()), int(stored_at_s.max())] if len(stored_at_s) else []
    bounds = list(sent) + stored_seconds
    start, end = (min(bounds), max(bounds)) if bounds else (0, 0)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    xs = np.arange(start, end + 1)
    if sent:
        ax.plot(xs - start, [sent.get(int(x), 0) for x in xs], label="published")
    if len(stored_at_s):
        ax.plot(xs - start, per_second(stored_at_s, start, end), label="stored")
    for began, back, label in faults:
        ax.axvspan(began - start, max(back, began + 0.5) - start, color="tab:red", alpha=0.15)
        ax.annotate(label, (began - start, ax.get_ylim()[1] * 0.92), fontsize=7, rotation=90, va="top")
    ax.set_title(f"{title}: published and stored per second".lstrip(": "), fontsize=10)
    ax.set_xlabel("time since the first send (s)")
    ax.set_ylabel("messages per second (msg/s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: the fault labels sit at the top
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(path: Path, latency_ms: np.ndarray, marks: dict[str, float], title: str = "") -> None:
    """Histogram and CDF on a log axis: a 60 ms median and a 14 s tail are both readable on one."""
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(10, 3.5))
    positive = latency_ms[latency_ms > 0]
    if len(positive):
        low, high = float(positive.min()), float(positive.max())
        hist.hist(positive, bins=np.geomspace(low, max(high, low * 1.01), 60))
        values = np.sort(positive)
        cdf.plot(values, np.arange(1, len(values) + 1) / len(values))
        for ax in (hist, cdf):
            ax.set_xscale("log")
    for name, value in marks.items():
        if value <= 0:
            continue
        for ax in (hist, cdf):
            ax.axvline(value, linestyle="--", linewidth=0.8)
        cdf.annotate(f"{name} {value:.0f} ms", (value, 0.05 + 0.3 * list(marks).index(name)), fontsize=8)
    fig.suptitle(f"{title}: end-to-end latency, device timestamp to stored".lstrip(": "), fontsize=10)
    hist.set_xlabel("latency (ms, log scale)")
    hist.set_ylabel("messages (count)")
    cdf.set_xlabel("latency (ms, log scale)")
    cdf.set_ylabel("fraction of messages (0-1)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# The hops of a stored reading's path, each timed from its item: they add up to its end-to-end latency.
# "processor to write": the invocation's start to its DynamoDB write request (the write's own latency,
# and its retries, come after the item's stored_at and are not in it).
HOPS = ("device to rule hand-off", "rule to processor", "processor to write")
ACK_HOP = "device to broker ack"
# After the write and off the stored reading's path: its archive record reaching S3 (on AWS this is
# Firehose's buffer, and S3 stamps objects to the second; ministack stamps them to the millisecond).
ARCHIVE_HOP = "write to archive"


def hop_samples(
    ts: Sequence[int], arrived: Sequence[int | None], invoked: Sequence[int | None], stored: Sequence[int]
) -> dict[str, np.ndarray]:
    """Milliseconds spent in each hop, per reading whose item carries its arrival and invocation."""
    timed = [
        (t, a, i, s) for t, a, i, s in zip(ts, arrived, invoked, stored, strict=True) if a is not None and i is not None
    ]
    columns = np.array(timed, dtype=float).reshape(-1, 4)
    return {hop: columns[:, n + 1] - columns[:, n] for n, hop in enumerate(HOPS)}


def plot_hops(path: Path, hops: dict[str, dict[str, float]], title: str = "") -> None:
    """Per percentile, a bar stacked by hop (each hop's own percentile: they need not add up to the
    end-to-end one); the broker's acknowledgement, seen by the simulator, is a bar of its own."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    marks = ("p50", "p95", "p99")
    left = np.zeros(len(marks))
    for hop in (*HOPS, ARCHIVE_HOP):
        widths = np.array([hops.get(hop, {}).get(m, 0.0) for m in marks])
        ax.barh(marks, widths, left=left, label=hop)
        left += widths
    ack = [hops.get(ACK_HOP, {}).get(m, 0.0) for m in marks]
    ax.barh([f"{m} ack" for m in marks], ack, color="grey", label=ACK_HOP)
    ax.set_xlabel("milliseconds")
    ax.set_title(f"{title}: where the latency goes, per hop".lstrip(": "), fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_lag(path: Path, stored_at_s: np.ndarray, latency_ms: np.ndarray, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if len(stored_at_s):
        start = stored_at_s.min()
        seconds = (stored_at_s - start).astype(int)
        worst = np.full(seconds.max() + 1, -np.inf)
        np.maximum.at(worst, seconds, latency_ms)
        # a second in which nothing was stored has no lag to show: a gap, not a zero
        worst[np.isinf(worst)] = np.nan
        ax.plot(np.arange(len(worst)), worst / 1000)
    ax.set_title(f"{title}: worst lag per second".lstrip(": "), fontsize=10)
    ax.set_xlabel("time since the first store (s)")
    ax.set_ylabel("worst lag in that second (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    def acked_ratio(self) -> float:
        """Acknowledgements per publish (a duplicate send is a publish of its own, acknowledged on its own)."""
        published = self.summary["published"]
        return float(self.summary["acked"] / published) if published else 0.0


class Check(NamedTuple):
    """One expectation of a scenario: whether it held, and what the run measured against it."""

    held: bool
    measured: str


def _ids(ids: Sequence[str], shown: int = 10) -> str:
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def checks(outcome: RunOutcome) -> dict[str, Check]:
    """Each of the scenario's expectations, named as the report shows it, whether it held and why."""
    expect, summary, result = outcome.scenario.expectations, outcome.summary, outcome.result
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
        f"lost <= {expect.max_lost}": Check(
            len(lost) <= expect.max_lost, f"{len(lost)} lost" + (f": {_ids(lost)}" if lost else "")
        ),
        f"unexplained <= {expect.max_unexplained}": Check(
            len(unexplained) <= expect.max_unexplained,
            f"{len(unexplained)} unexplained" + (f": {_ids(unexplained)}" if unexplained else ""),
        ),
        f"publish failures <= {expect.max_publish_failures}": Check(
            summary["failed"] <= expect.max_publish_failures,
            f"{summary['failed']} failed publishes {dict(summary['failed_by_cause'])}",
        ),
        f"acknowledged/published >= {expect.min_acked_ratio:g}": Check(
            outcome.acked_ratio >= expect.min_acked_ratio,
            f"{outcome.acked_ratio:.2%} ({summary['acked']:,} of {summary['published']:,})",
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
    if outcome.shards is not None:
        missing = outcome.shards["missing"]
        held[f"all {outcome.shards['count']} shards merged"] = Check(
            not missing,
            "; ".join(
                f"shard {m['shard']} unaccounted ({m['reason']}): {m['devices']} devices, {m['planned_messages']} "
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
        "published": summary["published"],
        "acked": result.acked,
        "acked_ratio": round(outcome.acked_ratio, 6),
        "publish_failures": summary["failed"],
        "publish_failures_by_cause": summary["failed_by_cause"],
        "reconnects": summary["reconnects"],
        "connect_errors": summary["connect_errors"],
        "broker_refusals": outcome.broker_refusals,
        "stored": result.stored,
        "quarantined": dict(result.quarantined),
        "dead_lettered": result.dead_lettered,
        "duplicates_dropped": result.duplicates_dropped,
        "lost": len(result.lost),
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


def write_junit(path: Path, report: dict[str, Any]) -> None:
    """One JUnit test case per check, a failure carrying what was measured: any CI shows which held."""
    failures = sum(not ok for ok in report["checks"].values())
    suite = ElementTree.Element(
        "testsuite",
        name=f"scenario {report['scenario']}",
        tests=str(len(report["checks"])),
        failures=str(failures),
        errors="0",
        skipped="0",
        timestamp=report["started"],
        time=f"{report['duration_s']:g}",
    )
    properties = ElementTree.SubElement(suite, "properties")
    for name in ("run_id", "ingress", "published", "stored", "lost"):
        ElementTree.SubElement(properties, "property", name=name, value=str(report[name]))
    for name, value in report.get("provenance", {}).items():
        ElementTree.SubElement(properties, "property", name=name, value=str(value))
    for name, ok in report["checks"].items():
        case = ElementTree.SubElement(
            suite, "testcase", classname=f"scenario.{report['scenario']}", name=name, time="0"
        )
        measured = report["measured"][name]
        if ok:
            ElementTree.SubElement(case, "system-out").text = measured
        else:
            ElementTree.SubElement(
                case, "failure", message=measured, type="ExpectationFailed"
            ).text = f"{name}: {measured}"
    ElementTree.indent(suite)
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def md(value: Any) -> str:
    """Text from elsewhere (a summary, a price file, a scenario) as literal Markdown on one line:
    a `|` does not end a table cell, a `[` starts no link, `<` no HTML."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def cost_lines(cost: dict[str, Any]) -> list[str]:
    """The report's cost section in Markdown: per service for the run and for a month at its rate."""
    if not cost:
        return []
    if "error" in cost:
        return ["## What this traffic would cost on AWS", "", f"Not counted: {md(cost['error'])}", ""]
    run, month, prices = cost["run"], cost["month"], cost["prices"]
    return [
        "## What this traffic would cost on AWS",
        "",
        f"List prices of {md(prices['region'])} as of {md(prices['as_of'])} (testbed/cost/prices/); "
        f"a month is 30 days at this run's {month['rate_msg_s']:,} msg/s. "
        "The free tier is shown apart, never subtracted.",
        "",
        f"| service | this run ({run['period_s']:g} s), {md(prices['currency'])} | a month, {md(prices['currency'])} |",
        "|---|---|---|",
        *(
            f"| {md(service)} | {usd:.6f} | {month['by_service_usd'][service]:,.2f} |"
            for service, usd in run["by_service_usd"].items()
        ),
        f"| **total** | **{run['total_usd']:.6f}** | **{month['total_usd']:,.2f}** |",
        f"| the free tier would cover | | {month['free_tier_would_cover_usd']:,.2f} |",
        "",
        "A month would save: "
        + "; ".join(f"{md(name)}: {saved:,.2f}" for name, saved in cost["month_savings_usd"].items())
        + ".",
        "",
        *(f"- {md(kind)}: {md(text)}" for kind, text in cost["basis"].items()),
        "",
    ]


def provenance_lines(found: dict[str, Any]) -> list[str]:
    """Where the report came from, one line (nothing for a report written before it was recorded)."""
    if not found:
        return []
    return ["- from: " + ", ".join(f"{md(name)} {md(value)}" for name, value in found.items())]


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    latency = report["e2e_latency_ms"]
    lines = [
        f"# Load run {md(report['run_id'])}: {md(report['scenario'])} - {verdict(report)}",
        "",
        f"- started {report['started']}, {report['duration_s']} s, ingress `{report['ingress']}`, "
        f"on {md(report['emulator'])}",
        f"- published {report['published']:,}, acknowledged {report['acked']:,}, stored {report['stored']:,}, "
        f"quarantined {sum(report['quarantined'].values()):,} {report['quarantined']}, "
        f"dead-lettered {report['dead_lettered']:,}, duplicates dropped {report['duplicates_dropped']:,}, "
        f"**lost {report['lost']:,}**",
        f"- sustained stored rate {report['throughput_msg_s']:,} msg/s; end-to-end latency p50 {latency['p50']} ms, "
        f"p95 {latency['p95']} ms, p99 {latency['p99']} ms, max {latency['max']} ms; slowest hop: "
        f"{report['slowest_hop'] or 'not timed'}",
        f"- publish failures {report['publish_failures']:,} {report['publish_failures_by_cause']}, "
        f"acknowledged/published {report['acked_ratio']:.2%}, reconnects {report['reconnects']:,}, "
        f"refused by the broker {sum(report['broker_refusals'].values()):,} {report['broker_refusals']}",
        f"- alerts {report['alerts']}: {json.dumps(report['alert_check'])}",
        f"- emulator RSS {report['emulator_rss_mb']} MB",
        *provenance_lines(report.get("provenance", {})),
        "",
        "| check | result | measured |",
        "|---|---|---|",
        *(
            f"| {name} | {'ok' if ok else 'FAILED'} | {md(report['measured'][name])} |"
            for name, ok in report["checks"].items()
        ),
        "",
        "![throughput](throughput.png)",
        "![latency](latency.png)",
        "![lag](lag.png)",
        "",
        "| hop | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        *(
            f"| {hop} | {p['p50']} | {p['p95']} | {p['p99']} | {p['max']} |"
            for hop, p in report["hop_latency_ms"].items()
        ),
        "",
        "![hops](hops.png)",
        "",
    ]
    if report["faults_injected"]:
        lines += [
            "## Faults injected",
            "",
            "| at (s) | fault | down (s) | back after (s) | acked around | lost | duplicated | recovered after (s) |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| {f['at_s']:g} | {f['fault']} | {f['down_s']:g} | {f['back_after_s']} | {f['acked_around']:,} "
                f"| {f['lost']:,} | {f['duplicated']:,} | {f['recovered_after_s']} |"
                + (f" error: {md(f['error'])}" if f["error"] else "")
                + (f" Known loss: {f['known_loss']}." if f["known_loss"] and f["lost"] else "")
                for f in report["faults_injected"]
            ),
            "",
        ]
    lines += cost_lines(report.get("cost", {}))
    if report["reconciliation"]["unexplained"]:
        lines += ["## Unexplained", "", *(f"- {json.dumps(u)}" for u in report["reconciliation"]["unexplained"])]
    path.write_text("\n".join(lines) + "\n")
