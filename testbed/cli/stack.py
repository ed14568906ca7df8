"""Commands that bring the stack up and take it down: build, up, parity, down, load, destroy, clean,
outputs, plan, provision, deprovision."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from simulator.devices import device_ids
from simulator.fleet import load_fleet
from testbed.cli import common
from testbed.lifecycle import iot_things
from testbed.lifecycle.backends import BackendError
from testbed.lifecycle.build import build
from testbed.lifecycle.stack import Stack
from testbed.parity import report as parity_report
from testbed.paths import PARITY_DIR
from toolkit.cli_help import count, seconds

# the most devices one `provision` makes: beyond it a value is a typo
MAX_PROVISIONED = 100_000


def cmd_build(args: argparse.Namespace) -> int:
    common.console.print(str(build()))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    outputs = stack.up()
    if outputs is None:
        return 0
    probe = not args.no_parity and stack.backend.name != "aws"
    if args.json:
        rows = [row.as_dict() for row in _probe(stack).rows] if probe else None
        print(json.dumps({"outputs": asdict(outputs), "parity": rows}))
        return 0
    common.print_outputs(outputs)
    if probe:
        _parity(stack)
    return 0


def _probe(stack: Stack) -> parity_report.Measured:
    """Probe the stack and keep its rows for the other backends' tables."""
    result = parity_report.measured(stack, parity_report.run_probes(parity_report.context_of(stack)))
    parity_report.save(result, PARITY_DIR)
    return result


def _parity(stack: Stack) -> parity_report.Measured:
    """Probe the stack, keep its rows, show them beside the other backends'."""
    result = _probe(stack)
    parity_report.print_table(result, common.console, parity_report.saved_others(PARITY_DIR, result.backend))
    return result


def cmd_parity(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    if stack.backend.name == "aws":
        print("parity compares a local backend with AWS; on AWS there is nothing to compare")
        return 2
    if args.json:
        print(json.dumps([row.as_dict() for row in _probe(stack).rows], indent=2))
    else:
        _parity(stack)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    common.stack_of(args).down()
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """The simulator as a compose service against the compose broker (make load BACKEND=localstack)."""
    stack = common.stack_of(args)
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


def cmd_destroy(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    stack.destroy()
    common.console.print(f"destroyed: provisioned devices and every resource of {stack.infra.folder}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    common.stack_of(args).clean()
    return 0


def cmd_outputs(args: argparse.Namespace) -> int:
    outputs = common.stack_of(args).outputs()
    if args.json:
        print(json.dumps(asdict(outputs), indent=2))
    else:
        common.print_outputs(outputs)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    stack.terraform.init()
    changes = stack.terraform.plan_changes()
    common.console.print(changes or f"No changes: the deployed stack matches {stack.infra.folder}.")
    return 0


def _things_dir(stack: Stack, prefix: str) -> Path:
    return stack.backend.state_dir / "things" / prefix


def cmd_provision(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
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
    common.console.print(f"{len(ids)} thing(s) with certificates in {manifest.parent}; endpoint {endpoint}")
    return 0


def cmd_deprovision(args: argparse.Namespace) -> int:
    stack = common.stack_of(args)
    removed = iot_things.deprovision(stack.client("iot"), _things_dir(stack, args.prefix))
    common.console.print(f"removed {removed} thing(s), their certificates and the policy")
    return 0


def add_commands(sub: Any) -> None:
    """This group's subcommands, on the `testbed` parser's subparsers."""
    sub.add_parser("build", help="build the processor zip (deterministic)").set_defaults(func=cmd_build)
    up = sub.add_parser("up", help="start the backend and deploy infra/, then probe what it does not do that AWS does")
    up.add_argument("--no-parity", action="store_true", help="skip the parity probes at the end (about 20 s)")
    up.add_argument("--json", action="store_true", help="the stack's outputs (and the parity rows) as JSON")
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
    things = sub.add_parser("provision", help="IoT things + certificates + a thing-scoped policy for N devices")
    which = things.add_mutually_exclusive_group(required=True)
    which.add_argument("--count", type=count(MAX_PROVISIONED), help="devices named <prefix>-00000, <prefix>-00001, ...")
    which.add_argument("--fleet", type=Path, help="the devices of this fleet file, with the simulator's ids")
    things.add_argument("--prefix", default="device", help="names the folder and the policy")
    things.set_defaults(func=cmd_provision)
    unthings = sub.add_parser("deprovision", help="remove the things, certificates and policy `provision` made")
    unthings.add_argument("--prefix", default="device")
    unthings.set_defaults(func=cmd_deprovision)
