"""Commands that run load through the stack: demo, simulate, shards, merge, signing-key, compare."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ingress.quotas.limits import IotQuotas
from simulator.shard import MAX_SHARDS
from testbed.cli import common
from testbed.cli.common import INTERRUPTED_EXIT, MAX_WORKERS
from testbed.lifecycle.stack import Stack
from testbed.runs import locust_run
from testbed.runs import shards as shard_runs
from testbed.runs.demo import run_demo
from testbed.runs.html_report import verdict, write_comparison
from testbed.runs.report_files import compare
from testbed.runs.runner import run_scenario
from testbed.runs.scenario import Scenario, load_scenario
from toolkit.cli_help import count
from toolkit.counts import labelled


def cost_summary(cost: dict[str, Any]) -> str:
    """One line: what the run would cost on AWS, and a month at its rate."""
    if not cost or "error" in cost:
        return f"AWS cost not counted: {cost.get('error', 'no cost section')}"
    month = cost["month"]
    largest = max(month["by_service_usd"], key=month["by_service_usd"].get)
    return (
        f"on AWS ({cost['prices']['region']}, prices of {cost['prices']['as_of']}): {cost['run']['total_usd']:.4f} "
        f"{cost['prices']['currency']} for this run, {month['total_usd']:,.2f} for a 30-day month at "
        f"{month['rate_msg_s']:,} msg/s ({largest} the largest part; report.md itemizes it)"
    )


def _simulate(stack: Stack, scenario: Scenario) -> int:
    common.console.print(f"scenario [bold]{escape(scenario.name)}[/]: {escape(scenario.description)}")
    return _show_run(scenario, run_scenario(stack, scenario, common.console).folder)


def _show_run(scenario: Scenario, folder: Path) -> int:
    report = json.loads((folder / "report.json").read_text())
    table = Table(title=f"{escape(scenario.name)}: {verdict(report)}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("measured")
    for name, ok in report["checks"].items():
        table.add_row(escape(name), "[green]ok[/]" if ok else "[red]FAILED[/]", escape(report["measured"][name]))
    common.console.print(table)
    common.console.print(
        "  ".join(f"{value:,} {name}" for name, value in labelled(report["counts"])), soft_wrap=True, highlight=False
    )
    keys = ("alerts", "throughput_msg_s", "e2e_latency_ms", "slowest_hop")
    common.console.print_json(json.dumps({k: report[k] for k in keys}))
    common.console.print(cost_summary(report.get("cost", {})))
    print(folder)
    if report.get("interrupted"):
        return INTERRUPTED_EXIT
    return 0 if report["passed"] else 1


def cmd_demo(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    outputs = stack.up()
    if outputs is not None:
        common.print_outputs(outputs)
    run_demo(stack, common.console)
    return _simulate(stack, load_scenario("smoke"))


def cmd_simulate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)  # a wrong name or file fails before anything starts
    if args.aws_quotas and scenario.aws_quotas is None:
        scenario = scenario.model_copy(update={"aws_quotas": IotQuotas()})
    stack = common.stack_of(args)
    if args.no_up:
        stack.outputs()  # not deployed: said now, by name
    else:
        if any(f.target == "api" for f in scenario.faults) and stack.backend.fault_proxy_url() is None:
            stack.use_api_faults()
            common.console.print(f"scenario {scenario.name} has API faults: the stack comes up behind the fault proxy")
        if scenario.aws_quotas is not None:
            stack.use_aws_quotas(scenario.aws_quotas)
            common.console.print("AWS IoT Core's quotas: devices reach the broker through the quota gate")
        stack.up()
    if args.runner == "locust":
        common.console.print(
            f"scenario [bold]{scenario.name}[/] on Locust, {args.workers} workers: {scenario.description}"
        )
        return _show_run(scenario, locust_run.run(stack, args.scenario, args.workers, common.console).folder)
    return _simulate(stack, scenario)


def cmd_shards(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    folder, commands = shard_runs.prepare(stack, args.scenario, args.count)
    common.console.print(f"run {folder.name}: {args.count} shards, devices provisioned; run each of these anywhere")
    common.console.print('with the signing key in the environment: SIMULATOR_SIGNING_KEY="$(bin/testbed signing-key)"')
    for command in commands:
        print(command)
    common.console.print(f"then: bin/testbed merge {folder}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    run = shard_runs.merge(stack, args.folder, common.console)
    return _show_run(run.outcome.scenario, run.folder)


def cmd_signing_key(args: argparse.Namespace) -> int:
    """The devices' signing key on stdout, for a shard's environment (never on a command line)."""
    sys.stdout.write(common.stack_of(args).signing_key().decode())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if args.json:
        rows = compare(args.first, args.second)
        print(json.dumps([{"": name, str(args.first): a, str(args.second): b} for name, a, b in rows], default=str))
        return 0
    table = Table(title="Report comparison")
    for column in ("", str(args.first), str(args.second)):
        table.add_column(escape(column))
    for name, a, b in compare(args.first, args.second):
        table.add_row(name, escape(str(a)), escape(str(b)))
    common.console.print(table)
    if args.html is not None:
        folders = [p if p.is_dir() else p.parent for p in (args.first, args.second)]
        common.console.print(f"side by side: {write_comparison(args.html, folders)}")
    return 0


def add_commands(sub: Any) -> None:
    """This group's subcommands, on the `testbed` parser's subparsers."""
    sub.add_parser("demo", help="up + messages through the pipeline + the smoke scenario").set_defaults(func=cmd_demo)
    simulate = sub.add_parser("simulate", help="run a load scenario, reconcile, write a report")
    simulate.add_argument("scenario", help="a shipped scenario name (testbed/runs/scenarios) or a YAML path")
    simulate.add_argument(
        "--runner",
        choices=("simulator", "locust"),
        default="simulator",
        help="locust: a Locust master and --workers workers on this machine, one shard each, then merged",
    )
    simulate.add_argument("--workers", type=count(MAX_WORKERS), default=2, help="Locust workers (shards)")
    simulate.add_argument(
        "--no-up",
        action="store_true",
        help="run against the stack as it is deployed (by `up` with variables of your own, or a test session) "
        "instead of bringing it up with this command's",
    )
    simulate.add_argument(
        "--aws-quotas",
        action="store_true",
        help="devices reach the broker through the quota gate, which enforces AWS IoT Core's quotas before any "
        "PUBACK (the scenario's `aws_quotas`, or AWS's defaults); the simulator resends what gets no PUBACK",
    )
    simulate.set_defaults(func=cmd_simulate)
    shards = sub.add_parser("shards", help="prepare a run in N shards to run anywhere; prints their commands")
    shards.add_argument("scenario", help="a shipped scenario name or a YAML path (without faults)")
    shards.add_argument("--count", type=count(MAX_SHARDS), required=True, help="how many shards")
    shards.set_defaults(func=cmd_shards)
    merged = sub.add_parser("merge", help="join a sharded run's summaries, reconcile and report it as one run")
    merged.add_argument("folder", type=Path, help="the run's folder (`shards` printed it)")
    merged.set_defaults(func=cmd_merge)
    sub.add_parser("signing-key", help="print the devices' signing key (for a shard's environment)").set_defaults(
        func=cmd_signing_key
    )
    comparison = sub.add_parser("compare", help="two reports side by side")
    comparison.add_argument("first", type=Path)
    comparison.add_argument("second", type=Path)
    comparison.add_argument("--html", type=Path, help="also write both reports side by side to this HTML file")
    comparison.add_argument("--json", action="store_true", help="the rows as JSON")
    comparison.set_defaults(func=cmd_compare)
