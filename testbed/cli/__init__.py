"""`bin/testbed <command>`: what the Makefile targets run. One module per command group
(stack, runs, cost, bench, operate), each command a thin call into the package that does the work."""

from __future__ import annotations

import argparse
import logging
import sys

from rich.logging import RichHandler
from rich.markup import escape

from simulator.exceptions import SimulatorError
from telemetry.outputs import OutputsError
from testbed.cli import bench, common, cost, operate, runs, stack
from testbed.cli.common import INTERRUPTED_EXIT
from testbed.exceptions import TestbedError
from toolkit.cli_help import HelpWithDefaults, parse_args
from toolkit.settings import SETTINGS, check_all, epilog

# What a user can cause and fix: reported as one line; anything else is a bug and shows its traceback.
EXPECTED_ERRORS = (TestbedError, SimulatorError, OutputsError)


def build_parser() -> argparse.ArgumentParser:
    parser = HelpWithDefaults(prog="testbed", description=__doc__, epilog=epilog("testbed"))
    parser.add_argument(
        "--backend",
        default=SETTINGS["BACKEND"].text(),
        help="embedded (default, no Docker), external (the emulator at AWS_ENDPOINT_URL, left running), "
        "localstack or ministack-docker (docker compose), or aws",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=HelpWithDefaults)
    for group in (operate, stack, runs, cost, bench):
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    # on a terminal, rich's columns; elsewhere one plain line per record, never padded to the width
    handler: logging.Handler = (
        RichHandler(console=common.console, show_path=False)
        if common.console.is_terminal
        else logging.StreamHandler(sys.stdout)
    )
    if not common.console.is_terminal:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", handlers=[handler])
    problems = check_all("testbed")
    if problems:  # every bad value at once, before anything starts (nothing later reads one unchecked)
        for problem in problems:
            common.console.print(f"[bold red]error:[/] {escape(problem)}")
        return 1
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        common.console.print(
            "[bold yellow]interrupted[/] (Ctrl-C): `make status` shows what still runs, `make down` stops it"
        )
        return INTERRUPTED_EXIT
    except EXPECTED_ERRORS as exc:
        common.console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
