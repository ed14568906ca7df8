"""What the command groups share: the console, the options' limits, printing outputs and rows."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from telemetry.outputs import StackOutputs
from testbed.lifecycle.backends import get_backend
from testbed.lifecycle.stack import Stack

# Piped to a file or a CI log, rich would wrap and cut at 80 columns (a queue URL cut in two): tables
# get this much room there, and text is not wrapped.
NOT_A_TERMINAL_WIDTH = 1000
# emoji codes off: an ARN holds `:secret:`, which rich would draw as an emoji
console = Console(emoji=False)
if not console.is_terminal:
    console = Console(emoji=False, width=NOT_A_TERMINAL_WIDTH, soft_wrap=True)
# what a shell reports for a command ended by Ctrl-C (128 + SIGINT)
INTERRUPTED_EXIT = 130
# the most simulator or Locust workers an option takes: beyond it a value is a typo
MAX_WORKERS = 256


def print_outputs(outputs: StackOutputs) -> None:
    table = Table(title="Stack outputs")
    table.add_column("output")
    table.add_column("value")
    for name, value in asdict(outputs).items():
        table.add_row(name, escape(str(value)))
    console.print(table)


def stack_of(args: argparse.Namespace) -> Stack:
    return Stack(get_backend(args.backend))


def print_rows(title: str, rows: list[dict[str, Any]], as_json: bool = True) -> None:
    """A benchmark's rows as a table, then (for scripts) as one JSON line."""
    table = Table(title=title)
    columns = list(dict.fromkeys(column for row in rows for column in row))  # a row may add figures
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        values = (row.get(column, "") for column in columns)
        table.add_row(*(f"{v:,}" if isinstance(v, int | float) else escape(str(v)) for v in values))
    console.print(table)
    if as_json:
        print(json.dumps(rows))
