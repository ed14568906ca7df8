"""`bin/simulator`: run a fleet (live or dry-run), replay a trace, plot device traces."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from simulator.connection import ConnectionOptionsError, add_connection_options, connection_options
from simulator.exceptions import SimulatorError
from simulator.fleet import load_fleet
from simulator.integrity import fleet_digest, read_run_key, seal
from simulator.limits import IOT_CORE_ACCOUNT_PUBLISHES_S, is_aws_iot
from simulator.metrics import LOOPBACK, FleetCollector, serve_metrics
from simulator.payload import load_payload_hook
from simulator.plot import plot_day
from simulator.progress import WorkerProgress
from simulator.replay import replay
from simulator.run import dry_run, live_run_with_progress
from simulator.run_config import DRAIN_TIMEOUT_S, RunConfig
from simulator.schedule import RateProfile
from simulator.shard import Shard, ShardError
from toolkit.cli_help import SEED, HelpWithDefaults, count, parse_args, port_number, rate, seconds
from toolkit.counts import Count, label
from toolkit.settings import SETTINGS, epilog

console = Console(stderr=True, emoji=False)
KEY_ENV = "SIMULATOR_SIGNING_KEY"
RUN_TAG = re.compile(r"[A-Za-z0-9]{0,16}")
# the most each option takes: beyond these a value is a typo, not a plan
MAX_WINDOW = 100_000
MAX_WORKERS = 256
MAX_PLOTTED_DEVICES = 1_000
MAX_PLOTTED_DAYS = 366.0
MAX_REPLAY_SPEED = 1e6


def parse_profile(text: str) -> Any:
    """`constant`, `ramp`, `step`, `burst`, or a JSON object such as {"kind": "ramp", "end": 3}."""
    data = json.loads(text) if text.startswith("{") else {"kind": text}
    try:
        return TypeAdapter(RateProfile).validate_python(data)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"invalid rate profile {text!r}: {exc.errors()[0]['msg']}") from None


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# the longest wait for a PUBACK before a resend: AWS IoT's device SDKs wait seconds, not minutes
MAX_ACK_TIMEOUT_S = 600.0


def _run_tag(text: str) -> str:
    if not RUN_TAG.fullmatch(text):
        raise argparse.ArgumentTypeError(f"run tag {text!r}: up to 16 letters and digits")
    return text


def _signing_key() -> bytes:
    key = SETTINGS[KEY_ENV].raw()
    if not key:
        raise SystemExit(f"error: set {KEY_ENV} to the device signing key (the testbed passes it from Secrets Manager)")
    return key.encode()


def _progress_table(total: WorkerProgress, started: float) -> Table:
    elapsed = max(time.time() - started, 1e-3)
    columns = {
        "connected": total.connected,
        label(Count.PUBLISHES): total.publishes,
        "msg/s": round(total.publishes / elapsed),
        label(Count.ACKNOWLEDGED): total.acknowledged,
        label(Count.FAILED): total.failed,
        label(Count.REFUSED_CONNECTIONS): total.refused_connections,
    }
    table = Table(show_header=True)
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*(f"{value:,}" for value in columns.values()))
    return table


def cmd_run(args: argparse.Namespace) -> int:
    run_key = None
    if args.shard is not None and args.dry_run is None:
        if args.run_key_file is None:
            raise SimulatorError(
                "a shard seals its summary with its run's key: give --run-key-file (`bin/testbed shards` "
                "prints each shard's command with it)"
            )
        run_key = read_run_key(args.run_key_file)  # refused here, before anything connects
    connection = connection_options(args)
    if args.payload_hook:
        load_payload_hook(args.payload_hook)  # refused here, before anything connects
    sign = connection.sign and args.payload_hook is None  # another wire format carries no signature of ours
    config = RunConfig(
        fleet=load_fleet(args.fleet),
        seed=args.seed,
        key=_signing_key() if sign else b"",
        duration_s=args.duration,
        profile=args.profile,
        qos=args.qos,
        host=connection.host,
        port=connection.port,
        window=args.window,
        ack_timeout_s=args.ack_timeout or None,
        drain_timeout_s=args.drain_timeout,
        clean_session=not args.persistent_session,
        workers=args.workers,
        websocket_host=connection.websocket_host,
        tls=connection.tls,
        iot_core_limits=args.iot_core_limits or is_aws_iot(connection.host),
        account_publish_limit=args.account_publish_limit,
        pregenerate=args.pregenerate,
        credentials=connection.credentials,
        topic=connection.topic,
        sign=sign,
        payload_hook=args.payload_hook,
        run_tag=args.run_tag,
        shard=args.shard,
    )
    if args.dry_run:
        summary = dry_run(config, args.dry_run)
        console.print(f"wrote {summary['publishes']:,} publishes to {args.dry_run}")
    else:
        collector = FleetCollector()
        server = serve_metrics(collector, args.metrics_port) if args.metrics_port is not None else None
        if server is not None:
            console.print(f"metrics: http://{LOOPBACK}:{server.server_port}/metrics")

        def progress(total: WorkerProgress) -> None:
            collector.update(total)
            live.update(_progress_table(total, started))

        started = time.time()
        try:
            with Live(
                _progress_table(WorkerProgress.total([]), started), console=console, refresh_per_second=4
            ) as live:
                summary = live_run_with_progress(config, progress)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
    output = {
        "fleet": config.fleet.name,
        "seed": args.seed,
        "qos": args.qos,
        "duration_s": args.duration,
        "devices": len(config.device_ids()),
        **(
            {
                "shard": str(args.shard),
                "run_tag": args.run_tag,
                "profile": args.profile.model_dump(),
                "fleet_sha256": fleet_digest(config.fleet),
                "signed": config.sign,
            }
            if args.shard
            else {}
        ),
        **summary,
    }
    if run_key is not None:
        output = seal(output, run_key)
    text = json.dumps(output, indent=None if args.summary else 2)
    if args.summary:
        # whole or not at all: a shard killed while writing leaves no half a summary for a merge to trust
        partial = args.summary.with_name(args.summary.name + ".partial")
        partial.write_text(text + "\n")
        os.replace(partial, args.summary)
        console.print(f"summary: {args.summary}")
    brief = {k: v for k, v in output.items() if k != "per_device"}
    console.print_json(json.dumps(brief))
    if summary["failed"]:
        causes = ", ".join(f"{n} {cause}" for cause, n in summary["failed_by_cause"].items())
        published = summary["acknowledged"] + summary["failed"]
        console.print(f"[red]{summary['failed']:,} of {published:,} messages failed ({causes})[/]")
        return 1
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    console.print(str(plot_day(args.out, seed=args.seed, devices_per_type=args.devices, days=args.days)))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    connection = connection_options(args)
    if connection.websocket_host is not None:
        raise ConnectionOptionsError("replay connects over TCP (or TLS); --websocket-host is for `run`")
    summary = replay(
        args.trace,
        _signing_key() if connection.sign else None,
        connection.host,
        connection.port,
        args.qos,
        args.speed,
        connection.credentials,
        tls=connection.tls,
        topic=connection.topic,
    )
    console.print_json(json.dumps({k: v for k, v in summary.items() if k != "per_device"}))
    return 0 if summary["failed"] == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = HelpWithDefaults(prog="simulator", description=__doc__, epilog=epilog("simulator"))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=HelpWithDefaults)
    run = sub.add_parser("run", help="run a fleet against a broker, or to a file with --dry-run")
    run.add_argument("--fleet", type=Path, required=True, help="fleet file (YAML)")
    run.add_argument("--seed", type=SEED, default=1)
    run.add_argument("--duration", type=seconds(), default=30.0, help="seconds")
    run.add_argument("--profile", type=parse_profile, default=parse_profile("constant"))
    run.add_argument("--qos", type=int, choices=(0, 1), default=1)
    run.add_argument("--window", type=count(MAX_WINDOW), default=100, help="messages in flight per device")
    run.add_argument(
        "--ack-timeout",
        type=seconds(MAX_ACK_TIMEOUT_S, positive=False),
        default=0.0,
        help="QoS 1: send a publish again when no PUBACK came within this many seconds, as AWS IoT's device "
        "SDKs do (AWS IoT throttles by withholding it); 0: only after a reconnect, as paho does",
    )
    run.add_argument(
        "--drain-timeout",
        type=seconds(positive=False),
        default=DRAIN_TIMEOUT_S,
        help="seconds to wait for the last acknowledgements after the run (what is not acknowledged then fails)",
    )
    run.add_argument("--persistent-session", action="store_true", help="clean_session=false")
    run.add_argument(
        "--workers", type=count(MAX_WORKERS), default=1, help="worker processes (each runs one event loop)"
    )
    run.add_argument(
        "--iot-core-limits",
        action="store_true",
        help="respect AWS IoT Core's publish quotas (automatic for *.amazonaws.com brokers)",
    )
    run.add_argument(
        "--account-publish-limit",
        type=rate(),
        default=IOT_CORE_ACCOUNT_PUBLISHES_S,
        help="the account's inbound publishes/s quota in its region",
    )
    run.add_argument(
        "--pregenerate",
        action="store_true",
        help="generate the whole run before the clock starts (same messages), then only send: the most load",
    )
    run.add_argument(
        "--shard",
        type=_shard,
        help="publish only shard i of N of the fleet (i from 0: a Kubernetes Indexed Job's completion index); "
        "`bin/testbed merge` joins the shards' --summary files into one run",
    )
    run.add_argument(
        "--run-tag",
        default="",
        type=_run_tag,
        help="goes into every device id, as the testbed provisions them for a run (shards of one run share it)",
    )
    run.add_argument(
        "--run-key-file",
        type=Path,
        help="with --shard: the run's key (from `bin/testbed shards`), which seals the summary for the merge",
    )
    run.add_argument("--dry-run", type=Path, help="write the messages to this JSONL file instead")
    run.add_argument("--summary", type=Path, help="write the run summary (JSON) here")
    run.add_argument(
        "--metrics-port", type=port_number, help="serve Prometheus metrics on 127.0.0.1:PORT/metrics while it runs"
    )
    run.add_argument(
        "--payload-hook",
        metavar="MODULE:FUNCTION",
        help="your wire format: FUNCTION(message dict) returns the payload (bytes, str, or JSON-able); unsigned",
    )
    add_connection_options(run)
    run.set_defaults(func=cmd_run)
    plot = sub.add_parser("plot", help="draw a few devices' traces over a simulated day (PNG)")
    plot.add_argument("--out", type=Path, default=Path("reports/device-traces.png"))
    plot.add_argument("--seed", type=SEED, default=1)
    plot.add_argument("--devices", type=count(MAX_PLOTTED_DEVICES), default=2, help="devices per type")
    plot.add_argument("--days", type=rate(MAX_PLOTTED_DAYS), default=1.0)
    plot.set_defaults(func=cmd_plot)
    rep = sub.add_parser("replay", help="publish a recorded JSONL/CSV trace, timestamps shifted to now")
    rep.add_argument("trace", type=Path)
    rep.add_argument("--speed", type=rate(MAX_REPLAY_SPEED), default=1.0, help="2 = twice as fast")
    rep.add_argument("--qos", type=int, choices=(0, 1), default=1)
    add_connection_options(rep)
    rep.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return int(args.func(args))
    except SimulatorError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
