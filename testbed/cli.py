"""`python -m testbed <command>`: what the Makefile targets run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from ingress.broker import IOT_MAX_PAYLOAD_BYTES
from simulator.devices import device_ids
from simulator.exceptions import SimulatorError
from simulator.fleet import load_fleet
from simulator.shard import MAX_SHARDS
from telemetry.cli_help import MAX_SECONDS, Bounded, HelpWithDefaults, count, parse_args, rate, seconds
from telemetry.outputs import OutputsError, StackOutputs
from testbed.bench import history as bench_history
from testbed.bench import ingress_rate as bench_ingress
from testbed.bench import processor_rate as bench_processor
from testbed.bench import simulator_rate as bench_simulator
from testbed.cost.bill import cost_section
from testbed.cost.prices import load_prices
from testbed.cost.traffic import plan
from testbed.exceptions import TestbedError
from testbed.lifecycle import iot_things
from testbed.lifecycle.backends import BackendError, get_backend
from testbed.lifecycle.build import build
from testbed.lifecycle.stack import Stack
from testbed.operate import doctor
from testbed.operate.env import exports, shell_lines
from testbed.operate.inspect import inventory
from testbed.operate.logs import FileSource, LogGroupSource, Source, follow, tail
from testbed.operate.status import stack_status
from testbed.parity import report as parity_report
from testbed.paths import PARITY_DIR, REPORTS_DIR
from testbed.runs import locust_run
from testbed.runs import shards as shard_runs
from testbed.runs.demo import run_demo
from testbed.runs.html_report import verdict, write_comparison
from testbed.runs.iam_check import IamCheck
from testbed.runs.redrive import redrive
from testbed.runs.runner import compare, run_scenario
from testbed.runs.scenario import Scenario, load_scenario
from testbed.runs.stores import Stores

logger = logging.getLogger("testbed")
# Piped to a file or a CI log, rich would wrap and cut at 80 columns (a queue URL cut in two): tables
# get this much room there, and text is not wrapped.
NOT_A_TERMINAL_WIDTH = 1000
# emoji codes off: an ARN holds `:secret:`, which rich would draw as an emoji
console = Console(emoji=False)
if not console.is_terminal:
    console = Console(emoji=False, width=NOT_A_TERMINAL_WIDTH, soft_wrap=True)

# runs a bench history can be asked for by number (far more than any history holds)
MAX_HISTORY_RUNS = 100_000
# what a shell reports for a command ended by Ctrl-C (128 + SIGINT)
INTERRUPTED_EXIT = 130
# the most each option takes (AWS's own limits where it has one): beyond these a value is a typo
MAX_WORKERS = 256
MAX_BATCH_SIZE = 10_000
MAX_PROVISIONED = 100_000
LAMBDA_MAX_MS = 900_000.0
LAMBDA_MIN_MEMORY_MB = 128
LAMBDA_MAX_MEMORY_MB = 10_240
MINUTES = Bounded(float, 0.0, MAX_SECONDS / 60, "a number of minutes")

# What a user can cause and fix: reported as one line; anything else is a bug and shows its traceback.
EXPECTED_ERRORS = (TestbedError, SimulatorError, OutputsError)


def _print_outputs(outputs: StackOutputs) -> None:
    table = Table(title="Stack outputs")
    table.add_column("output")
    table.add_column("value")
    for name, value in asdict(outputs).items():
        table.add_row(name, escape(str(value)))
    console.print(table)


def _stack(args: argparse.Namespace) -> Stack:
    return Stack(get_backend(args.backend))


def _print_rows(title: str, rows: list[dict[str, Any]], as_json: bool = True) -> None:
    """A benchmark's rows as a table, then (for scripts) as one JSON line."""
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int | float) else escape(str(v)) for v in row.values()))
    console.print(table)
    if as_json:
        print(json.dumps(rows))


def cmd_doctor(args: argparse.Namespace) -> int:
    return doctor.main(["--backend", args.backend, *(["--tests"] if args.tests else [])])


def cmd_build(args: argparse.Namespace) -> int:
    console.print(str(build()))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    stack = _stack(args)
    outputs = stack.up()
    if outputs is not None:
        _print_outputs(outputs)
        if not args.no_parity and stack.backend.name != "aws":
            _parity(stack)
    return 0


def _parity(stack: Stack) -> parity_report.Measured:
    """Probe the stack, keep its rows for the other backends' tables, show them beside theirs."""
    result = parity_report.measured(stack, parity_report.run_probes(parity_report.context_of(stack)))
    parity_report.save(result, PARITY_DIR)
    parity_report.print_table(result, console, parity_report.saved_others(PARITY_DIR, result.backend))
    return result


def cmd_parity(args: argparse.Namespace) -> int:
    stack = _stack(args)
    if stack.backend.name == "aws":
        print("parity compares a local backend with AWS; on AWS there is nothing to compare")
        return 2
    if args.json:
        result = parity_report.measured(stack, parity_report.run_probes(parity_report.context_of(stack)))
        parity_report.save(result, PARITY_DIR)
        print(json.dumps([row.as_dict() for row in result.rows], indent=2))
    else:
        _parity(stack)
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    stack = _stack(args)
    stack.destroy()
    console.print(f"destroyed: provisioned devices and every resource of {stack.infra.folder}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """The simulator as a compose service against the compose broker (make load BACKEND=localstack)."""
    stack = _stack(args)
    backend = stack.backend
    if not backend.simulator_container:
        raise BackendError(
            f"`load` runs the simulator container of a compose backend; on {backend.name} use `make simulate`"
        )
    fleet = load_fleet(Path(args.fleet))
    key = "<the stack's signing key>" if backend.dry_run else stack.signing_key().decode()
    backend.provision_devices(device_ids(fleet))
    backend.run_simulator(args.fleet, args.duration, key)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    _stack(args).down()
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    _stack(args).clean()
    return 0


def cmd_outputs(args: argparse.Namespace) -> int:
    outputs = _stack(args).outputs()
    if args.json:
        print(json.dumps(asdict(outputs), indent=2))
    else:
        _print_outputs(outputs)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    stack = _stack(args)
    stack.terraform.init()
    changes = stack.terraform.plan_changes()
    console.print(changes or f"No changes: the deployed stack matches {stack.infra.folder}.")
    return 0


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
    console.print(f"scenario [bold]{escape(scenario.name)}[/]: {escape(scenario.description)}")
    return _show_run(scenario, run_scenario(stack, scenario, console).folder)


def _show_run(scenario: Scenario, folder: Path) -> int:
    report = json.loads((folder / "report.json").read_text())
    table = Table(title=f"{escape(scenario.name)}: {verdict(report)}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("measured")
    for name, ok in report["checks"].items():
        table.add_row(escape(name), "[green]ok[/]" if ok else "[red]FAILED[/]", escape(report["measured"][name]))
    console.print(table)
    keys = (
        "published",
        "acked",
        "stored",
        "quarantined",
        "dead_lettered",
        "duplicates_dropped",
        "lost",
        "alerts",
        "throughput_msg_s",
        "e2e_latency_ms",
        "slowest_hop",
    )
    console.print_json(json.dumps({k: report[k] for k in keys}))
    console.print(cost_summary(report.get("cost", {})))
    print(folder)
    if report.get("interrupted"):
        return INTERRUPTED_EXIT
    return 0 if report["passed"] else 1


def cmd_demo(args: argparse.Namespace) -> int:
    stack = _stack(args)
    outputs = stack.up()
    if outputs is not None:
        _print_outputs(outputs)
    run_demo(stack, console)
    return _simulate(stack, load_scenario("smoke"))


def cmd_simulate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)  # a wrong name or file fails before anything starts
    stack = _stack(args)
    if args.no_up:
        stack.outputs()  # not deployed: said now, by name
    else:
        stack.up()
    if args.runner == "locust":
        console.print(f"scenario [bold]{scenario.name}[/] on Locust, {args.workers} workers: {scenario.description}")
        return _show_run(scenario, locust_run.run(stack, args.scenario, args.workers, console).folder)
    return _simulate(stack, scenario)


def cmd_shards(args: argparse.Namespace) -> int:
    stack = _stack(args)
    folder, commands = shard_runs.prepare(stack, args.scenario, args.count)
    console.print(f"run {folder.name}: {args.count} shards, devices provisioned; run each of these anywhere")
    console.print('with the signing key in the environment: SIMULATOR_SIGNING_KEY="$(python -m testbed signing-key)"')
    for command in commands:
        print(command)
    console.print(f"then: python -m testbed merge {folder}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    stack = _stack(args)
    run = shard_runs.merge(stack, args.folder, console)
    return _show_run(run.outcome.scenario, run.folder)


def cmd_signing_key(args: argparse.Namespace) -> int:
    """The devices' signing key on stdout, for a shard's environment (never on a command line)."""
    sys.stdout.write(_stack(args).signing_key().decode())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    table = Table(title="Report comparison")
    for column in ("", str(args.first), str(args.second)):
        table.add_column(escape(column))
    for name, a, b in compare(args.first, args.second):
        table.add_row(name, escape(str(a)), escape(str(b)))
    console.print(table)
    if args.html is not None:
        folders = [p if p.is_dir() else p.parent for p in (args.first, args.second)]
        console.print(f"side by side: {write_comparison(args.html, folders)}")
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    """What a planned load would cost on AWS in a 30-day month, without running it."""
    prices = load_prices(args.region, args.prices)
    traffic = plan(
        rate_msg_s=args.rate,
        devices=args.devices,
        payload_bytes=args.payload_bytes,
        batch=args.batch,
        ms_per_invocation=args.ms_per_invocation,
        memory_mb=args.memory_mb,
        basic_ingest=args.basic_ingest,
    )
    section = cost_section(traffic, prices)
    if args.json:
        print(json.dumps(section["month"] | {"savings_usd": section["month_savings_usd"], "prices": section["prices"]}))
        return 0
    month = section["month"]
    title = f"A 30-day month at {args.rate:,g} msg/s ({prices.region} list prices of {prices.as_of})"
    table = Table(title=escape(title))
    for column in ("item", "quantity", "unit", prices.currency, "counted as"):
        table.add_column(escape(column), justify="right" if column in ("quantity", prices.currency) else "left")
    for line in month["lines"]:
        quantity, usd = f"{line['quantity']:,.2f}", f"{line['usd']:,.2f}"
        table.add_row(escape(line["item"]), quantity, escape(line["unit"]), usd, escape(line["basis"]))
    table.add_row("total", "", "", f"{month['total_usd']:,.2f}", "")
    console.print(table)
    console.print(f"the free tier would cover {month['free_tier_would_cover_usd']:,.2f} (not subtracted above)")
    for name, saved in section["month_savings_usd"].items():
        console.print(f"{escape(name)}: saves {saved:,.2f} a month")
    console.print(f"assumed: {escape(section['basis']['assumed'])}")
    return 0


def cmd_bench_processor(args: argparse.Namespace) -> int:
    stack = None if args.in_process_only else _stack(args)
    if stack is not None:
        stack.up()
    rows = bench_processor.run(stack)
    _print_rows("Processor throughput (records/s)", rows)
    return 0


def cmd_bench_simulator(args: argparse.Namespace) -> int:
    rows = bench_simulator.run(duration_s=args.duration, workers=args.workers)
    _print_rows("Simulator against a private Mosquitto", rows)
    return 0


def cmd_bench_ingress(args: argparse.Namespace) -> int:
    stack = _stack(args)
    modes = tuple(args.modes.split(","))
    for mode in modes:
        stack.backend.check_ingress(mode)
    stack.up()
    rows = bench_ingress.run(stack, modes, duration_s=args.duration)
    _print_rows("Local ingress modes, end to end (MQTT -> DynamoDB), QoS 1", rows)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.action == "compare":
        return _bench_compare(args.runs)
    stack = _stack(args)
    stack.up()
    result = bench_ingress.bench(stack, duration_s=args.duration, start=args.start)
    title = "End to end: the pipeline's design against the naive design (QoS 1, zero loss)"
    steps = [
        {k: v for k, v in row.items() if k != "cpu_us_per_msg"}
        for row in result["design_steps"] + result["naive_steps"]
    ]
    _print_rows(title, steps, as_json=False)
    ceiling, best, naive = result["ceiling"], result["best"], result["naive_best"]
    console.print(
        f"emulator ceiling, same run: BatchWriteItem {ceiling['dynamodb_items_s']} items/s, invoke path "
        f"{ceiling['invoke_msg_s']} msg/s, together {ceiling['combined_msg_s']} msg/s "
        f"({ceiling['emulator_us_per_msg']} us of emulator per message)"
    )
    if best is None:
        lowest = min(row["offered_msg_s"] for row in result["design_steps"])
        console.print(f"no step kept up with zero loss, down to {lowest:g} msg/s: start lower (--start)")
    else:
        console.print(
            f"best good rate: {best['stored_msg_s']} msg/s (p99 {best['p99_ms']} ms) = "
            f"{result['of_ceiling']:.0%} of the emulator's ceiling; naive design: "
            f"{naive['stored_msg_s'] if naive else 'none'} msg/s; design/naive "
            f"{str(result['ratio']) + 'x' if result['ratio'] else 'not measured'}; "
            f"emulator RSS {stack.backend.emulator_rss_mb()} MB"
        )
        cpu = Table(title=f"CPU per stored message at {best['stored_msg_s']} msg/s, by process")
        cpu.add_column("process")
        cpu.add_column("us per message", justify="right")
        for name, us in sorted(result["cpu_us_per_msg"].items(), key=lambda kv: -kv[1]):
            cpu.add_row(name, f"{us:,.1f}")
        cpu.add_row("all", f"{sum(result['cpu_us_per_msg'].values()):,.1f}")
        console.print(cpu)
    try:
        kept = bench_history.append(
            REPORTS_DIR, bench_history.entry(result, stack.backend.name, stack.backend.emulator())
        )
        console.print(f"kept in {kept}: `testbed bench compare` sets it beside the run before")
    except OSError as exc:
        console.print(f"[yellow]warning:[/] this run's figures were not kept in the bench history: {escape(str(exc))}")
    print(json.dumps(result))
    return 0


def _bench_compare(numbers: tuple[int, int] | None) -> int:
    """Two kept runs side by side, the newer's figures as ratios of the older's."""
    older, newer = bench_history.pick(bench_history.runs(REPORTS_DIR), numbers)
    table = Table(title="Two bench runs: ratios hold across machines of different speed")
    for column in ("figure", f"{older['when']} {older['commit']}", f"{newer['when']} {newer['commit']}", "ratio"):
        table.add_column(escape(column), justify="right")
    for row in bench_history.compare(older, newer):
        table.add_row(
            escape(row.figure),
            *(f"{v:,g}" if v is not None else "-" for v in (row.older, row.newer)),
            f"{row.ratio:g}x" if row.ratio is not None else "-",
        )
    console.print(table)
    for label, run in (("older", older), ("newer", newer)):
        machine = run.get("machine", {})
        console.print(
            f"{label}: {escape(str(run.get('emulator')))} on {machine.get('cpus')} x {escape(str(machine.get('cpu')))}"
        )
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    stack = _stack(args)
    sources: list[Source] = [FileSource(name, path) for name, path in stack.backend.log_files().items()]
    if stack.outputs_file.exists():
        group = stack.outputs().function_log_group
        since_ms = int((time.time() - args.since * 60) * 1000)
        sources.append(LogGroupSource(stack.client("logs"), group, since_ms))
    if args.source:
        unknown = set(args.source) - {s.name for s in sources}
        if unknown:
            raise BackendError(f"no log source {sorted(unknown)} here; there are: {', '.join(s.name for s in sources)}")
        sources = [s for s in sources if s.name in args.source]
    if not sources:
        raise BackendError(f"BACKEND={stack.backend.name} has no log here yet: nothing was started or deployed")
    try:
        for line in tail(sources, args.limit):
            print(line)
        if args.follow:
            for line in follow(sources, stop=lambda: False):
                print(line, flush=True)
    except (BotoCoreError, ClientError) as exc:
        raise BackendError(f"cannot read the processor's log group (is the stack up?): {exc}") from exc
    except KeyboardInterrupt:
        pass
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    stack = _stack(args)
    components, facts = stack_status(stack)
    table = Table(title=f"Stack status ({stack.backend.name})")
    for column in ("component", "state", "pid", "address", "detail"):
        table.add_column(column)
    for c in components:
        state = "[green]running[/]" if c.running else "[red]stopped[/]"
        table.add_row(c.name, state, str(c.pid or "-"), escape(c.address), escape(c.detail))
    console.print(table)
    for name, value in facts.items():
        console.print(f"{name}: {escape(str(value))}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    stack = _stack(args)
    try:
        found = inventory(Stores.connect(stack.outputs(), stack.client))
    except (BotoCoreError, ClientError) as exc:
        raise BackendError(f"cannot read the stack's stores (is it up? make status): {exc}") from exc
    if args.json:
        print(json.dumps(found.as_dict(), indent=2))
        return 0
    table = Table(title="What the stores hold")
    table.add_column("store")
    table.add_column("count", justify="right")
    table.add_row("telemetry table items", f"{found.telemetry_items:,}")
    table.add_row("ingest queue (waiting + in flight)", f"{found.ingest_queue:,}")
    table.add_row("dead-letter queue", f"{found.dead_letter_queue:,}")
    table.add_row("alerts tap queue", f"{found.alerts_tap_queue:,}")
    table.add_row("archive objects (raw/)", f"{found.archive_objects:,} ({found.archive_bytes:,} bytes)")
    console.print(table)
    reasons = Table(title="Quarantine reasons")
    for column in ("reason", "records", "latest (UTC)"):
        reasons.add_column(column)
    for reason, (records, latest) in found.quarantine_reasons.items():
        reasons.add_row(escape(reason), f"{records:,}", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(latest)))
    console.print(reasons if found.quarantine_reasons else "quarantine: empty")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    for line in shell_lines(exports(_stack(args).backend)):
        print(line)
    return 0


def cmd_iam_check(args: argparse.Namespace) -> int:
    stack = _stack(args)
    if not stack.backend.iam_enforced:
        raise BackendError("iam-check needs IAM enforced: IAM=enforce make iam-check")
    stack.up()
    verdicts = IamCheck(stack, log=lambda line: console.print(f"[dim]{line}[/]")).run()
    table = Table(title="Each action of the stack's role policies, taken away in turn")
    for column in ("role", "action", "needed", "why"):
        table.add_column(column)
    for v in verdicts:
        needed = "[green]needed[/]" if v.needed else ("[red]not needed[/]" if v.finding else "not here")
        table.add_row(v.role, v.action, needed, v.detail)
    console.print(table)
    findings = [v for v in verdicts if v.finding]
    console.print(
        f"{len(findings)} action(s) nothing needs" + (f": {', '.join(v.action for v in findings)}" if findings else "")
    )
    if args.json:
        print(json.dumps([{**asdict(v), "finding": v.finding} for v in verdicts]))
    return 1 if findings else 0


def cmd_redrive(args: argparse.Namespace) -> int:
    stack = _stack(args)
    outputs = stack.outputs()
    result = redrive(stack.client("sqs"), outputs.dlq_url, outputs.ingest_queue_url)
    console.print(
        f"moved {result.moved:,} record(s) from the DLQ back to the ingest queue; kept "
        f"{result.kept_error_actions:,} rule error-action document(s) (payloads the rule or SQS refused) in the DLQ"
    )
    return 0


def _things_dir(stack: Stack, prefix: str) -> Path:
    return stack.backend.state_dir / "things" / prefix


def cmd_provision(args: argparse.Namespace) -> int:
    stack = _stack(args)
    outputs = stack.outputs()
    if args.fleet is not None:
        ids = device_ids(load_fleet(args.fleet))
    else:
        ids = [f"{args.prefix}-{n:05d}" for n in range(args.count)]
    manifest = stack.backend.register_things(
        ids,
        _things_dir(stack, args.prefix),
        f"iot-pipeline-{outputs.need('environment_suffix')}-{args.prefix}-device-policy",
    )
    endpoint = stack.client("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    console.print(f"{len(ids)} thing(s) with certificates in {manifest.parent}; endpoint {endpoint}")
    return 0


def cmd_deprovision(args: argparse.Namespace) -> int:
    stack = _stack(args)
    removed = iot_things.deprovision(stack.client("iot"), _things_dir(stack, args.prefix))
    console.print(f"removed {removed} thing(s), their certificates and the policy")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = HelpWithDefaults(prog="testbed", description=__doc__)
    parser.add_argument(
        "--backend",
        default=os.environ.get("BACKEND", "embedded"),
        help="embedded (default, no Docker), external (the emulator at AWS_ENDPOINT_URL, left running), "
        "localstack or ministack-docker (docker compose), or aws",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=HelpWithDefaults)
    checkup = sub.add_parser("doctor", help="check this machine: Python, Terraform, Mosquitto, ports, disk, Docker")
    checkup.add_argument("--tests", action="store_true", help="what the tests need (test tools; no fixed ports)")
    checkup.set_defaults(func=cmd_doctor)
    sub.add_parser("build", help="build the processor zip (deterministic)").set_defaults(func=cmd_build)
    up = sub.add_parser("up", help="start the backend and deploy infra/, then probe what it does not do that AWS does")
    up.add_argument("--no-parity", action="store_true", help="skip the parity probes at the end (about 20 s)")
    up.set_defaults(func=cmd_up)
    parity = sub.add_parser("parity", help="probe the running backend for the AWS behaviours the pipeline relies on")
    parity.add_argument("--json", action="store_true", help="the rows as JSON")
    parity.set_defaults(func=cmd_parity)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    load = sub.add_parser("load", help="compose backends: run the simulator container against the stack")
    load.add_argument("--fleet", default="simulator/fleets/smoke.yaml", help="a fleet file, relative to the checkout")
    load.add_argument("--duration", type=seconds(), default=60.0, help="seconds")
    load.set_defaults(func=cmd_load)
    sub.add_parser(
        "destroy", help="remove provisioned devices and every deployed resource (terraform destroy)"
    ).set_defaults(func=cmd_destroy)
    sub.add_parser("clean", help="stop and remove all local state").set_defaults(func=cmd_clean)
    outputs = sub.add_parser("outputs", help="print the deployed stack's outputs")
    outputs.add_argument("--json", action="store_true")
    outputs.set_defaults(func=cmd_outputs)
    sub.add_parser("plan", help="show what a new apply would change").set_defaults(func=cmd_plan)
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
    comparison.set_defaults(func=cmd_compare)
    cost = sub.add_parser("cost", help="what a planned load would cost on AWS in a 30-day month, without running it")
    cost.add_argument("--rate", type=rate(), required=True, help="messages per second, sustained")
    cost.add_argument("--devices", type=count(), required=True, help="devices connected all month")
    cost.add_argument("--payload-bytes", type=count(IOT_MAX_PAYLOAD_BYTES), required=True, help="bytes per message")
    cost.add_argument("--batch", type=count(MAX_BATCH_SIZE), default=10, help="records per processor invocation")
    cost.add_argument(
        "--ms-per-invocation",
        type=rate(LAMBDA_MAX_MS),
        default=60.0,
        help="processor duration (a run's report measures it)",
    )
    cost.add_argument(
        "--memory-mb",
        type=count(LAMBDA_MAX_MEMORY_MB, LAMBDA_MIN_MEMORY_MB),
        default=512,
        help="the processor's memory",
    )
    cost.add_argument("--basic-ingest", action="store_true", help="devices publish through Basic Ingest")
    cost.add_argument("--region", default="us-east-1", help="the price file's region (testbed/cost/prices/)")
    cost.add_argument("--prices", type=Path, help="a price file of your own instead")
    cost.add_argument("--json", action="store_true", help="print the month's bill as JSON")
    cost.set_defaults(func=cmd_cost)
    bench = sub.add_parser("bench-processor", help="records/s through the processor, in-process and deployed")
    bench.add_argument("--in-process-only", action="store_true", help="skip the deployed function")
    bench.set_defaults(func=cmd_bench_processor)
    sim_bench = sub.add_parser("bench-simulator", help="simulator connections and msg/s against a private broker")
    sim_bench.add_argument("--duration", type=seconds(), default=20.0)
    sim_bench.add_argument("--workers", type=count(MAX_WORKERS), default=2)
    sim_bench.set_defaults(func=cmd_bench_simulator)
    ingress_bench = sub.add_parser("bench-ingress", help="highest zero-loss rate of each local ingress mode")
    ingress_bench.add_argument("--modes", default="direct,sqs,iot", help="comma-separated ingress modes")
    ingress_bench.add_argument("--duration", type=seconds(), default=20.0)
    ingress_bench.set_defaults(func=cmd_bench_ingress)
    full_bench = sub.add_parser("bench", help="highest zero-loss rate of the design and of the naive design")
    full_bench.add_argument(
        "action",
        nargs="?",
        choices=("run", "compare"),
        default="run",
        help="run the bench (and keep its figures), or compare two kept runs as ratios",
    )
    full_bench.add_argument(
        "--runs",
        nargs=2,
        type=count(MAX_HISTORY_RUNS),
        default=None,
        metavar=("OLDER", "NEWER"),
        help="compare: the runs' numbers in reports/bench-history.jsonl, 1 the oldest (default: the last two)",
    )
    full_bench.add_argument("--duration", type=seconds(), default=15.0, help="seconds per step")
    full_bench.add_argument(
        "--start",
        type=rate(),
        default=bench_ingress.START_RATE,
        help="the search's first rate (msg/s); it doubles from there while steps keep up",
    )
    full_bench.set_defaults(func=cmd_bench)
    logs = sub.add_parser("logs", help="the emulator's, broker's, bridge's and processor's log lines, one prefix each")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.add_argument("--since", type=MINUTES, default=10.0, help="minutes of the processor's log group to read")
    logs.add_argument("--limit", type=count(), default=50, help="the latest lines of each source at most")
    logs.add_argument(
        "--source", action="append", help="only this source (emulator, broker, bridge, lambda); repeatable"
    )
    logs.set_defaults(func=cmd_logs)
    iam_check = sub.add_parser("iam-check", help="take each action of the role policies away in turn and probe")
    iam_check.add_argument("--json", action="store_true", help="also print the verdicts as one JSON line")
    iam_check.set_defaults(func=cmd_iam_check)
    sub.add_parser("status", help="what runs, PIDs, ports, ingress mode, outputs age").set_defaults(func=cmd_status)
    inspect = sub.add_parser("inspect", help="counts of what the stores hold: table, queues, quarantine, archive")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=cmd_inspect)
    sub.add_parser(
        "env", help='export lines for aws, awslocal, terraform, boto3: eval "$(python -m testbed env)"'
    ).set_defaults(func=cmd_env)
    sub.add_parser("redrive", help="move dead-lettered records back to the ingest queue").set_defaults(func=cmd_redrive)
    things = sub.add_parser("provision", help="IoT things + certificates + a thing-scoped policy for N devices")
    which = things.add_mutually_exclusive_group(required=True)
    which.add_argument("--count", type=count(MAX_PROVISIONED), help="devices named <prefix>-00000, <prefix>-00001, ...")
    which.add_argument("--fleet", type=Path, help="the devices of this fleet file, with the simulator's ids")
    things.add_argument("--prefix", default="device", help="names the folder and the policy")
    things.set_defaults(func=cmd_provision)
    unthings = sub.add_parser("deprovision", help="remove the things, certificates and policy `provision` made")
    unthings.add_argument("--prefix", default="device")
    unthings.set_defaults(func=cmd_deprovision)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    # on a terminal, rich's columns; elsewhere one plain line per record, never padded to the width
    handler: logging.Handler = (
        RichHandler(console=console, show_path=False) if console.is_terminal else logging.StreamHandler(sys.stdout)
    )
    if not console.is_terminal:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", handlers=[handler])
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        console.print("[bold yellow]interrupted[/] (Ctrl-C): `make status` shows what still runs, `make down` stops it")
        return INTERRUPTED_EXIT
    except EXPECTED_ERRORS as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
