"""Commands for living with a stack: doctor, logs, iam-check, status, inspect, env, redrive."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.markup import escape
from rich.table import Table

from testbed.cli import common
from testbed.lifecycle.backends import BackendError
from testbed.operate import doctor
from testbed.operate.env import dotenv_lines, exports, shell_lines
from testbed.operate.iam_check import IamCheck
from testbed.operate.inspect import inventory
from testbed.operate.logs import FileSource, LogGroupSource, Source, follow, tail
from testbed.operate.redrive import redrive
from testbed.operate.status import stack_status
from testbed.stores import Stores
from toolkit.cli_help import MAX_SECONDS, Bounded, count

# how far back `logs --since` reads, in minutes
MINUTES = Bounded(float, 0.0, MAX_SECONDS / 60, "a number of minutes")


def cmd_doctor(args: argparse.Namespace) -> int:
    flags = [*(["--tests"] if args.tests else []), *(["--json"] if args.json else [])]
    return doctor.main(["--backend", args.backend, *flags])


def cmd_logs(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
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
    stack = common.stack_of(args)
    components, facts = stack_status(stack)
    if args.json:
        print(json.dumps({"components": [asdict(c) for c in components], **{k: str(v) for k, v in facts.items()}}))
        return 0
    table = Table(title=f"Stack status ({stack.backend.name})")
    for column in ("component", "state", "pid", "address", "detail"):
        table.add_column(column)
    for c in components:
        state = "[green]running[/]" if c.running else "[red]stopped[/]"
        table.add_row(c.name, state, str(c.pid or "-"), escape(c.address), escape(c.detail))
    common.console.print(table)
    for name, value in facts.items():
        common.console.print(f"{name}: {escape(str(value))}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
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
    common.console.print(table)
    reasons = Table(title="Quarantine reasons")
    for column in ("reason", "records", "latest (UTC)"):
        reasons.add_column(column)
    for reason, (records, latest) in found.quarantine_reasons.items():
        reasons.add_row(escape(reason), f"{records:,}", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(latest)))
    common.console.print(reasons if found.quarantine_reasons else "quarantine: empty")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    env = exports(common.stack_of(args).backend)
    for line in dotenv_lines(env) if args.dotenv else shell_lines(env):
        print(line)
    return 0


def cmd_iam_check(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    if not stack.backend.iam_enforced:
        raise BackendError("iam-check needs IAM enforced: IAM=enforce make iam-check")
    stack.up()
    verdicts = IamCheck(stack, log=lambda line: common.console.print(f"[dim]{line}[/]")).run()
    table = Table(title="Each action of the stack's role policies, taken away in turn")
    for column in ("role", "action", "needed", "why"):
        table.add_column(column)
    for v in verdicts:
        needed = "[green]needed[/]" if v.needed else ("[red]not needed[/]" if v.finding else "not here")
        table.add_row(v.role, v.action, needed, v.detail)
    common.console.print(table)
    findings = [v for v in verdicts if v.finding]
    common.console.print(
        f"{len(findings)} action(s) nothing needs" + (f": {', '.join(v.action for v in findings)}" if findings else "")
    )
    if args.json:
        print(json.dumps([{**asdict(v), "finding": v.finding} for v in verdicts]))
    return 1 if findings else 0


def cmd_redrive(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    outputs = stack.outputs()
    result = redrive(stack.client("sqs"), outputs.dlq_url, outputs.ingest_queue_url)
    common.console.print(
        f"moved {result.moved:,} record(s) from the DLQ back to the ingest queue; kept "
        f"{result.kept_error_actions:,} rule error-action document(s) (payloads the rule or SQS refused) in the DLQ"
    )
    return 0


def add_commands(sub: Any) -> None:
    """This group's subcommands, on the `testbed` parser's subparsers."""
    checkup = sub.add_parser("doctor", help="check this machine: Python, Terraform, Mosquitto, ports, disk, Docker")
    checkup.add_argument("--tests", action="store_true", help="what the tests need (test tools; no fixed ports)")
    checkup.add_argument("--json", action="store_true", help="the findings as JSON")
    checkup.set_defaults(func=cmd_doctor)
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
    status = sub.add_parser("status", help="what runs, PIDs, ports, ingress mode, outputs age")
    status.add_argument("--json", action="store_true", help="the components and facts as JSON")
    status.set_defaults(func=cmd_status)
    inspect = sub.add_parser("inspect", help="counts of what the stores hold: table, queues, quarantine, archive")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=cmd_inspect)
    env = sub.add_parser("env", help='export lines for aws, awslocal, terraform, boto3: eval "$(bin/testbed env)"')
    env.add_argument(
        "--dotenv",
        action="store_true",
        help='NAME=value lines instead (an env file: `>> "$GITHUB_ENV"`, docker --env-file)',
    )
    env.set_defaults(func=cmd_env)
    sub.add_parser("redrive", help="move dead-lettered records back to the ingest queue").set_defaults(func=cmd_redrive)
