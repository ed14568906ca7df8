"""The `cost` command: what a planned load would cost on AWS, without running it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ingress.broker import IOT_MAX_PAYLOAD_BYTES
from testbed.cli import common
from testbed.cost.bill import cost_section
from testbed.cost.prices import load_prices
from testbed.cost.traffic import plan
from toolkit.cli_help import count, rate

# the most each option takes (AWS's own limits): beyond these a value is a typo
MAX_BATCH_SIZE = 10_000
LAMBDA_MAX_MS = 900_000.0
LAMBDA_MIN_MEMORY_MB = 128
LAMBDA_MAX_MEMORY_MB = 10_240


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
    common.console.print(table)
    common.console.print(f"the free tier would cover {month['free_tier_would_cover_usd']:,.2f} (not subtracted above)")
    for name, saved in section["month_savings_usd"].items():
        common.console.print(f"{escape(name)}: saves {saved:,.2f} a month")
    common.console.print(f"assumed: {escape(section['basis']['assumed'])}")
    return 0


def add_commands(sub: Any) -> None:
    """This group's subcommands, on the `testbed` parser's subparsers."""
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
