"""report.html: one self-contained page per run (plots inlined, no network), or two runs side by side.

People open a report in a browser or a CI artifact viewer, often offline: everything the page shows
is in the file. Every value from the run is escaped, since device ids and error texts come from
outside the project.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from testbed.runs.faults import calls_text
from toolkit.counts import Count, label, labelled, sums_text

PLOTS = (
    ("throughput.png", "Throughput"),
    ("latency.png", "Latency: histogram and CDF"),
    ("lag.png", "Lag"),
    ("hops.png", "Latency per hop"),
)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 .passed { color: #1a7f37; } h1 .failed { color: #cf222e; } h1 .interrupted { color: #9a6700; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
td.ok { color: #1a7f37; } td.bad { color: #cf222e; font-weight: bold; }
img { max-width: 100%; display: block; margin: 0.5rem 0 1rem; }
.runs { display: grid; grid-template-columns: repeat(auto-fit, minmax(32rem, 1fr)); gap: 2rem; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if classes else ""
        body.append("<tr>" + "".join(f"<td{css if j == 1 else ''}>{_e(v)}</td>" for j, v in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p>{_e(alt)}: no plot ({_e(path.name)} is missing)</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def verdict(report: dict[str, Any]) -> str:
    """PASSED, FAILED, or INTERRUPTED (stopped by the user before the end: neither)."""
    if report.get("interrupted"):
        return "INTERRUPTED"
    return "PASSED" if report["passed"] else "FAILED"


def run_section(report: dict[str, Any], folder: Path) -> str:
    """One run: verdict, checks, figures, plots, quarantine reasons, faults, alerts, what is unexplained."""
    shown = verdict(report)
    latency = report["e2e_latency_ms"]
    by_reason = report["reconciliation"]["quarantined_by_reason"]
    checks = [(name, "ok" if ok else "FAILED", report["measured"][name]) for name, ok in report["checks"].items()]
    parts = [
        f'<section class="run" id="run-{_e(report["run_id"])}">',
        f'<h1>{_e(report["scenario"])}: <span class="{shown.lower()}">{shown}</span></h1>',
        f"<p>run {_e(report['run_id'])}, started {_e(report['started'])}, {_e(report['duration_s'])} s, "
        f"ingress <code>{_e(report['ingress'])}</code></p>",
        *(
            [f'<p class="from">from: {_e(", ".join(f"{k} {v}" for k, v in report["provenance"].items()))}</p>']
            if report.get("provenance")
            else []
        ),
        '<h2 id="checks">Checks</h2>',
        _table(("check", "result", "measured"), checks, ["ok" if ok else "bad" for ok in report["checks"].values()]),
        '<h2 id="figures">Figures</h2>',
        _table(
            ("figure", "value"),
            [
                *((name, f"{value:,}") for name, value in labelled(report["counts"])),
                (f"{label(Count.ACKNOWLEDGED)} of messages published", f"{report['acknowledged_ratio']:.2%}"),
                ("the sums", sums_text(report["sums"], report["qos"])),
                ("failed publishes by cause", str(report["failed_by_cause"])),
                ("sustained stored rate", f"{report['throughput_msg_s']:,} msg/s"),
                *((f"latency {k}", f"{v} ms") for k, v in latency.items()),
                *(
                    (f"{hop}, p50 / p95 / p99", f"{p['p50']} / {p['p95']} / {p['p99']} ms")
                    for hop, p in report.get("hop_latency_ms", {}).items()
                ),
                ("slowest hop (p95)", report.get("slowest_hop") or "not timed"),
                (
                    "emulator RSS",
                    "not measured" if report["emulator_rss_mb"] is None else f"{report['emulator_rss_mb']} MB",
                ),
            ],
        ),
        '<h2 id="plots">Plots</h2>',
        *(_image(folder / name, alt) for name, alt in PLOTS),
        '<h2 id="quarantine">Quarantine reasons</h2>',
        _table(("reason", "records"), sorted(by_reason.items(), key=lambda kv: -kv[1]))
        if by_reason
        else "<p>nothing quarantined</p>",
        '<h2 id="faults">Faults injected</h2>',
        _table(
            (
                "at (s)",
                "fault",
                "down (s)",
                "back after (s)",
                "unaccounted",
                "dead-lettered",
                "delivered twice",
                "recovered after (s)",
                "API calls",
                "error",
            ),
            [
                (
                    f["at_s"],
                    f["fault"],
                    f["down_s"],
                    f["back_after_s"],
                    f["lost"],
                    f["dead_lettered"],
                    f["duplicated"],
                    f["recovered_after_s"],
                    calls_text(f["calls"]),
                    f["error"] or "",
                )
                for f in report["faults_injected"]
            ],
        )
        if report["faults_injected"]
        else "<p>no faults in this scenario</p>",
        '<h2 id="alerts">Alerts</h2>',
        f"<p>{report['alerts']:,} alert(s)</p><pre>{_e(json.dumps(report['alert_check'], indent=2))}</pre>",
        '<h2 id="unexplained">Unaccounted and unexplained</h2>',
        _unexplained(report["reconciliation"]),
        '<h2 id="cost">What this traffic would cost on AWS</h2>',
        _cost(report.get("cost", {})),
        "</section>",
    ]
    return "\n".join(parts)


def _cost(cost: dict[str, Any]) -> str:
    """The run's bill and a month's at its rate, per item, with how each was counted."""
    if not cost or "error" in cost:
        return f"<p>not counted: {_e(cost.get('error', 'no cost section in this report'))}</p>"
    prices, month = cost["prices"], cost["month"]
    month_usd = {line["item"]: line["usd"] for line in month["lines"]}
    rows = [
        (
            line["item"],
            f"{line['quantity']:,.4g} {line['unit']}",
            f"{line['usd']:.6f}",
            f"{month_usd[line['item']]:,.2f}",
            line["basis"],
        )
        for line in cost["run"]["lines"]
    ]
    rows.append(("total", "", f"{cost['run']['total_usd']:.6f}", f"{month['total_usd']:,.2f}", ""))
    header = ("item", "this run", f"run, {prices['currency']}", f"month, {prices['currency']}", "counted as")
    notes = [f"{name}: saves {saved:,.2f} a month" for name, saved in cost["month_savings_usd"].items()]
    notes += [f"{kind}: {text}" for kind, text in cost["basis"].items()]
    return (
        f"<p>{_e(prices['region'])} list prices as of {_e(prices['as_of'])}; a month is 30 days at "
        f"{month['rate_msg_s']:,} msg/s; the free tier (it would cover {month['free_tier_would_cover_usd']:,.2f}) "
        "is not subtracted.</p>\n"
        + _table(header, rows)
        + "<ul>"
        + "".join(f"<li>{_e(note)}</li>" for note in notes)
        + "</ul>"
    )


def _unexplained(reconciliation: dict[str, Any]) -> str:
    lost, unexplained = reconciliation["lost_ids"], reconciliation["unexplained"]
    if not lost and not unexplained:
        return "<p>every message is accounted for</p>"
    items = [f"<li>unaccounted (lost): {_e(i)}</li>" for i in lost] + [
        f"<li>{_e(json.dumps(u))}</li>" for u in unexplained
    ]
    return f"<ul>{''.join(items)}</ul>"


def page(title: str, sections: Sequence[str]) -> str:
    body = sections[0] if len(sections) == 1 else f'<div class="runs">{"".join(sections)}</div>'
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def write_html(folder: Path, report: dict[str, Any]) -> Path:
    """report.html in the run folder, from report.json's content and the plots beside it."""
    path = folder / "report.html"
    path.write_text(
        page(f"{report['scenario']} {verdict(report)}: load run {report['run_id']}", [run_section(report, folder)])
    )
    return path


def write_comparison(path: Path, folders: Sequence[Path]) -> Path:
    """Two (or more) runs side by side on one page."""
    reports = [json.loads((folder / "report.json").read_text()) for folder in folders]
    title = " vs ".join(f"{r['scenario']} {r['run_id']}" for r in reports)
    path.write_text(page(title, [run_section(r, f) for r, f in zip(reports, folders, strict=True)]))
    return path
