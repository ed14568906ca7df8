"""The benchmark commands: bench-processor, bench-simulator, bench-ingress, bench (run, compare)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rich.markup import escape
from rich.table import Table

from testbed.bench import fault_proxy as bench_fault_proxy
from testbed.bench import history as bench_history
from testbed.bench import ingress_rate as bench_ingress
from testbed.bench import processor_rate as bench_processor
from testbed.bench import simulator_rate as bench_simulator
from testbed.bench.cpu_bar import cpu_bar
from testbed.cli import common
from testbed.cli.common import MAX_WORKERS
from testbed.paths import REPORTS_DIR
from toolkit.cli_help import count, rate, seconds

# runs a bench history can be asked for by number (far more than any history holds)
MAX_HISTORY_RUNS = 100_000


def cmd_bench_processor(args: argparse.Namespace) -> int:
    stack = None if args.in_process_only else common.stack_of(args)
    if stack is not None:
        stack.up()
    rows = bench_processor.run(stack)
    common.print_rows("Processor throughput (records/s)", rows)
    return 0


def cmd_bench_simulator(args: argparse.Namespace) -> int:
    rows = bench_simulator.run(duration_s=args.duration, workers=args.workers)
    common.print_rows("Simulator against a private Mosquitto", rows)
    return 0


def cmd_bench_ingress(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    modes = tuple(args.modes.split(","))
    for mode in modes:
        stack.backend.check_ingress(mode)
    stack.up()
    rows = bench_ingress.run(stack, modes, duration_s=args.duration)
    common.print_rows("Local ingress modes, end to end (MQTT -> DynamoDB), QoS 1", rows)
    return 0


def cmd_bench_fault_proxy(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    stack.up()
    result = {"per_call": bench_fault_proxy.per_call(stack)}
    common.print_rows("The API fault proxy: one call (DynamoDB GetItem), interleaved rounds", [result["per_call"]])
    if args.rate:
        result["pipeline"] = bench_fault_proxy.pipeline_rate(stack, args.rate, rounds=args.rounds)
        _print_proxy_rate(result["pipeline"])
    print(json.dumps(result))
    return 0


def _print_proxy_rate(pipeline: dict[str, Any]) -> None:
    share = pipeline["proxied_share"]
    direct, proxied = (", ".join(f"{r:g}" for r in pipeline[key]) for key in ("direct_msg_s", "proxied_msg_s"))
    common.console.print(
        f"offered {pipeline['offered_msg_s']:g} msg/s, stored msg/s per round: without the proxy {direct}; "
        f"through it (no rules) {proxied}; through it "
        + (f"{share:.0%} of the rate without it" if share is not None else "not measured")
        + f" (goal >= {bench_fault_proxy.RATE_SHARE_GOAL:.0%})"
    )


def cmd_bench(args: argparse.Namespace) -> int:
    if args.action == "compare":
        return _bench_compare(args.runs)
    stack = common.stack_of(args)
    stack.up()
    result = bench_ingress.bench(stack, duration_s=args.duration, start=args.start)
    title = "End to end: the pipeline's design against the naive design (QoS 1, zero loss)"
    steps = [
        {k: v for k, v in row.items() if k != "cpu_us_per_msg"}
        for row in result["design_steps"] + result["naive_steps"]
    ]
    common.print_rows(title, steps, as_json=False)
    ceiling, best, naive = result["ceiling"], result["best"], result["naive_best"]
    common.console.print(
        f"emulator ceiling, same run: BatchWriteItem {ceiling['dynamodb_items_s']} items/s, invoke path "
        f"{ceiling['invoke_msg_s']} msg/s, together {ceiling['combined_msg_s']} msg/s "
        f"({ceiling['emulator_us_per_msg']} us of emulator per message)"
    )
    if best is None:
        lowest = min(row["offered_msg_s"] for row in result["design_steps"])
        common.console.print(f"no step kept up with zero loss, down to {lowest:g} msg/s: start lower (--start)")
    else:
        common.console.print(
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
        common.console.print(cpu)
        raw = result["raw_receive"]
        if raw is not None:
            common.console.print(
                f"one raw paho subscriber receiving {best['stored_msg_s']} msg/s at QoS 1 (private Mosquitto, "
                f"same run): {raw['cpu_us_per_msg']} us per message; the rule bridge spends "
                + (f"{result['bridge_over_raw_receive']}x that" if result["bridge_over_raw_receive"] else "(n/a)")
                + " (its rule, batches and invokes on top of the receive)"
            )
        picture = REPORTS_DIR / f"bench-{time.strftime('%Y%m%dT%H%M%S')}-cpu.png"
        picture.parent.mkdir(parents=True, exist_ok=True)
        result["cpu_picture"] = str(
            cpu_bar(result["cpu_us_per_msg"], best["stored_msg_s"], ceiling["emulator_us_per_msg"], picture)
        )
        common.console.print(f"where the cores went: {picture}")
    # what the API fault proxy costs: per call, and the pipeline's rate through it just above the best
    result["fault_proxy"] = {"per_call": bench_fault_proxy.per_call(stack)}
    common.print_rows("The API fault proxy: one call (DynamoDB GetItem)", [result["fault_proxy"]["per_call"]])
    if best is not None:
        offered = round(best["stored_msg_s"] * bench_fault_proxy.ABOVE_BEST)
        result["fault_proxy"]["pipeline"] = bench_fault_proxy.pipeline_rate(stack, offered)
        _print_proxy_rate(result["fault_proxy"]["pipeline"])
    try:
        kept = bench_history.append(
            REPORTS_DIR, bench_history.entry(result, stack.backend.name, stack.backend.emulator())
        )
        common.console.print(f"kept in {kept}: `testbed bench compare` sets it beside the run before")
    except OSError as exc:
        common.console.print(
            f"[yellow]warning:[/] this run's figures were not kept in the bench history: {escape(str(exc))}"
        )
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
    common.console.print(table)
    for label, run in (("older", older), ("newer", newer)):
        machine = run.get("machine", {})
        common.console.print(
            f"{label}: {escape(str(run.get('emulator')))} on {machine.get('cpus')} x {escape(str(machine.get('cpu')))}"
        )
    return 0


def add_commands(sub: Any) -> None:
    """This group's subcommands, on the `testbed` parser's subparsers."""
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
    proxy_bench = sub.add_parser(
        "bench-fault-proxy",
        help="the API fault proxy's added latency and CPU per call, and the pipeline's rate through it",
    )
    proxy_bench.add_argument(
        "--rate", type=rate(), default=None, help="offer this msg/s with and without the proxy (default: calls only)"
    )
    proxy_bench.add_argument("--rounds", type=count(10), default=bench_fault_proxy.RATE_ROUNDS)
    proxy_bench.set_defaults(func=cmd_bench_fault_proxy)
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
