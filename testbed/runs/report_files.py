"""report.md and junit.xml, written from a run's report.json (the HTML page: html_report.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import matplotlib

matplotlib.use("Agg")

from testbed.exceptions import TestbedError
from testbed.runs.faults import calls_text
from testbed.runs.html_report import verdict
from testbed.runs.provenance import REPORT_SCHEMA_VERSION
from testbed.runs.quota_account import quota_lines
from toolkit.counts import Count, label, labelled, sums_text


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
    for name in ("run_id", "ingress"):
        ElementTree.SubElement(properties, "property", name=name, value=str(report[name]))
    for name, value in report["counts"].items():
        ElementTree.SubElement(properties, "property", name=name, value=str(value))
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
        "- " + ", ".join(f"{name} {value:,}" for name, value in labelled(report["counts"])),
        f"- {sums_text(report['sums'], report['qos'])}",
        f"- sustained stored rate {report['throughput_msg_s']:,} msg/s; end-to-end latency p50 {latency['p50']} ms, "
        f"p95 {latency['p95']} ms, p99 {latency['p99']} ms, max {latency['max']} ms; slowest hop: "
        f"{report['slowest_hop'] or 'not timed'}",
        f"- failed publishes by cause {report['failed_by_cause']}, reconnects {report['reconnects']:,}, "
        f"publishes the broker refused {sum(report['broker_refusals'].values()):,} {report['broker_refusals']}, "
        f"quarantine records by reason {report['reconciliation']['quarantined_by_reason']}",
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
            "| at (s) | fault | down (s) | back after (s) | acknowledged around it | unaccounted | dead-lettered "
            "| delivered twice | recovered after (s) | API calls |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *(
                f"| {f['at_s']:g} | {f['fault']} | {f['down_s']:g} | {f['back_after_s']} | {f['acked_around']:,} "
                f"| {f['lost']:,} | {f['dead_lettered']:,} | {f['duplicated']:,} | {f['recovered_after_s']} "
                f"| {calls_text(f['calls'])} |"
                + (f" error: {md(f['error'])}" if f["error"] else "")
                + (f" Known loss: {f['known_loss']}." if f["known_loss"] and f["lost"] else "")
                for f in report["faults_injected"]
            ),
            "",
        ]
    lines += quota_lines(report.get("aws_quotas"))
    lines += cost_lines(report.get("cost", {}))
    if report["reconciliation"]["unexplained"]:
        lines += ["## Unexplained", "", *(f"- {json.dumps(u)}" for u in report["reconciliation"]["unexplained"])]
    path.write_text("\n".join(lines) + "\n")


class ReportError(TestbedError):
    """A report that cannot be read, or was written in another schema than this testbed reads."""


def read_report(path: Path) -> dict[str, Any]:
    """A run's report.json (given it or its folder), refused when another schema wrote it: its counts
    have other names or meanings, so side by side they would mislead."""
    file = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{file} is not a readable report ({exc})") from None
    schema = report.get("provenance", {}).get("report_schema") if isinstance(report, dict) else None
    if schema != REPORT_SCHEMA_VERSION:
        raise ReportError(
            f"{file} is a report of schema {schema or 'unknown (older)'}; this testbed reads schema "
            f"{REPORT_SCHEMA_VERSION}, whose counts have other names: run its scenario again to compare it"
        )
    return dict(report)


def compare(first: Path, second: Path) -> list[tuple[str, Any, Any]]:
    """The headline figures of two reports side by side: every count, then rates and latency."""
    a, b = read_report(first), read_report(second)
    rows: list[tuple[str, Any, Any]] = [("scenario", a.get("scenario"), b.get("scenario"))]
    counts_a, counts_b = a.get("counts", {}), b.get("counts", {})
    rows += [(label(c), counts_a.get(c), counts_b.get(c)) for c in Count if c in counts_a or c in counts_b]
    rows += [(k, a.get(k), b.get(k)) for k in ("alerts", "throughput_msg_s")]
    rows += [(f"e2e p{p}", a["e2e_latency_ms"][f"p{p}"], b["e2e_latency_ms"][f"p{p}"]) for p in (50, 95, 99)]
    rows.append(("passed", a["passed"], b["passed"]))
    return rows
