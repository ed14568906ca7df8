"""`bin/ingress bridge`: run the rule bridge against the deployed stack's outputs;
`bin/ingress gate`: enforce AWS IoT Core's quotas in front of the local broker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ingress.bridge import RuleBridge
from ingress.broker import BRIDGE_USER, LOOPBACK
from ingress.delivery import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    BridgeConfig,
)
from ingress.metrics import serve_metrics
from ingress.quotas.gate import Ledger, QuotaGate, run_gate
from ingress.quotas.limits import MAX_RATE, IotQuotas
from ingress.rule import Rule, RuleError, parse_rule
from telemetry.credentials import device_password
from telemetry.outputs import StackOutputs
from toolkit.cli_help import HelpWithDefaults, count, parse_args, port_number, rate, seconds
from toolkit.iot_quotas import MAX_PAYLOAD_BYTES
from toolkit.settings import epilog

HEALTHY_METRICS_AGE_S = 15.0
# AWS's own limits: an SQS event source's batch, its receive count, a queue's visibility timeout
MAX_BATCH_SIZE = 10_000
MAX_RECEIVE_COUNT = 1_000
MAX_VISIBILITY_S = 43_200.0
MAX_FLUSH_S = 300.0
MAX_CONCURRENCY = 1_000
DEFAULT_MAX_RECEIVE_COUNT = 5


# The gate's flags, one per field of IotQuotas (AWS's defaults).
QUOTA_FLAGS = {
    "publishes_per_s": "publishes per second per connection",
    "bytes_per_s": "payload bytes per second per connection",
    "connects_per_s": "CONNECTs per second per client id",
    "max_payload_bytes": "the largest payload; a larger one closes the connection",
    "account_publishes_per_s": "inbound publishes per second, all connections together",
}


def build_parser() -> argparse.ArgumentParser:
    parser = HelpWithDefaults(prog="ingress", description=__doc__, epilog=epilog("the rule bridge"))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=HelpWithDefaults)
    bridge = sub.add_parser("bridge", help="evaluate the stack's topic rule and forward matching messages")
    bridge.add_argument("--outputs", type=Path, required=True, help="`terraform output -json` of the stack")
    bridge.add_argument("--mode", choices=("sqs", "direct"), default="direct")
    bridge.add_argument("--broker", default="127.0.0.1:1883", help="host:port")
    bridge.add_argument("--secret-file", type=Path, required=True, help="the broker secret (bridge credentials)")
    bridge.add_argument(
        "--batch-size",
        type=count(MAX_BATCH_SIZE),
        default=DEFAULT_BATCH_SIZE,
        help="direct mode: records per invocation",
    )
    bridge.add_argument(
        "--flush-interval",
        type=seconds(MAX_FLUSH_S, positive=False),
        default=DEFAULT_FLUSH_INTERVAL_S,
        help="seconds a partial batch may wait",
    )
    bridge.add_argument("--concurrency", type=count(MAX_CONCURRENCY), default=DEFAULT_CONCURRENCY)
    bridge.add_argument(
        "--max-receive-count",
        type=count(MAX_RECEIVE_COUNT),
        help="direct mode: deliveries before the DLQ (default: the queue's policy)",
    )
    bridge.add_argument(
        "--visibility-timeout",
        type=seconds(MAX_VISIBILITY_S, positive=False),
        help="direct mode: longest wait between deliveries (default: the queue's)",
    )
    bridge.add_argument("--metrics-file", type=Path, help="write the counters here once a second (JSON)")
    bridge.add_argument(
        "--metrics-port", type=port_number, help="serve Prometheus metrics on 127.0.0.1:PORT/metrics while it runs"
    )
    bridge.add_argument(
        "--broker-log",
        type=Path,
        help="with --metrics-port: the broker's log, whose refusals become broker_refusals_total",
    )
    bridge.set_defaults(func=run_bridge)
    gate = sub.add_parser("gate", help="enforce AWS IoT Core's quotas in front of the broker (devices connect here)")
    gate.add_argument("--broker", default="127.0.0.1:1883", help="the broker's host:port")
    gate.add_argument("--port", type=port_number, default=0, help="the gate's port on 127.0.0.1 (0: a free one)")
    gate.add_argument("--port-file", type=Path, help="write the port here once the gate listens")
    gate.add_argument("--ledger", type=Path, help="write each client id's quota hits here (JSON), once a second")
    defaults = IotQuotas()
    for name, help_text in QUOTA_FLAGS.items():
        kind = count(MAX_PAYLOAD_BYTES) if name == "max_payload_bytes" else rate(MAX_RATE * 1024)
        flag = "--" + name.replace("_", "-")
        gate.add_argument(flag, dest=name, type=kind, default=getattr(defaults, name), help=help_text)
    gate.set_defaults(func=run_quota_gate)
    health = sub.add_parser("health", help="exit 0 if a running bridge wrote its counters lately (health check)")
    health.add_argument("--metrics-file", type=Path, required=True)
    health.add_argument("--max-age", type=seconds(), default=HEALTHY_METRICS_AGE_S, help="seconds")
    health.set_defaults(func=check_health)
    return parser


def check_health(args: argparse.Namespace) -> int:
    """The bridge rewrites its metrics file every second while it runs; a stale or missing file is unhealthy."""
    try:
        age = time.time() - args.metrics_file.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: {args.metrics_file} does not exist", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"unhealthy: {args.metrics_file} is {age:.0f} s old", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    return int(args.func(args))


def queue_redelivery(sqs: Any, queue_url: str) -> tuple[float, int]:
    """The ingest queue's visibility timeout and redrive limit, which direct mode plays by."""
    try:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
        )["Attributes"]
        policy = json.loads(attributes.get("RedrivePolicy", "{}"))
        return float(attributes["VisibilityTimeout"]), int(policy["maxReceiveCount"])
    except (BotoCoreError, ClientError, KeyError, ValueError, TypeError) as exc:
        logging.warning(
            "could not read the ingest queue's redelivery settings (%s); using %g s and %d deliveries",
            exc,
            DEFAULT_VISIBILITY_TIMEOUT_S,
            DEFAULT_MAX_RECEIVE_COUNT,
        )
        return DEFAULT_VISIBILITY_TIMEOUT_S, DEFAULT_MAX_RECEIVE_COUNT


def aws_config(concurrency: int) -> Config:
    """The bridge's AWS clients: a connection per action thread and its error action, bounded retries
    (the bridge retries on its own), and a read timeout longer than the processor's longest run."""
    return Config(
        retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=concurrency * 2, read_timeout=120
    )


def bridge_config(
    args: argparse.Namespace, outputs: StackOutputs, rule: Rule, redelivery: tuple[float, int]
) -> BridgeConfig:
    """The bridge as the command line and the stack's outputs configure it; the queue's own
    redelivery settings (`queue_redelivery`) where the command line gives none."""
    visibility_s, max_receive = redelivery
    host, _, port = args.broker.rpartition(":")
    return BridgeConfig(
        rule=rule,
        rule_name=outputs.iot_rule_name,
        mode=args.mode,
        host=host or "127.0.0.1",
        port=int(port),
        username=BRIDGE_USER,
        password=device_password(args.secret_file.read_bytes().strip(), BRIDGE_USER),
        queue_url=outputs.ingest_queue_url,
        dlq_url=outputs.dlq_url,
        function_name=outputs.processor_function_name,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        max_receive_count=args.max_receive_count or max_receive,
        visibility_timeout_s=args.visibility_timeout or visibility_s,
        metrics_file=args.metrics_file,
        flush_interval_s=args.flush_interval,
    )


def run_bridge(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    try:
        outputs = StackOutputs.from_terraform(json.loads(args.outputs.read_text()))
    except (OSError, ValueError) as exc:  # missing, unreadable, not JSON, or without an output it needs
        logging.error("cannot read the stack's outputs from %s: %s", args.outputs, exc)
        return 2
    try:
        rule = parse_rule(outputs.iot_rule_sql)
    except RuleError as exc:
        logging.error("cannot evaluate the stack's topic rule: %s", exc)
        return 2
    aws = aws_config(args.concurrency)
    session = boto3.session.Session(region_name=outputs.region)
    sqs = session.client("sqs", config=aws)
    config = bridge_config(args, outputs, rule, queue_redelivery(sqs, outputs.ingest_queue_url))
    runner = RuleBridge(config, sqs, session.client("lambda", config=aws))
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    server = serve_metrics(runner, args.metrics_port, args.broker_log) if args.metrics_port is not None else None
    if server is not None:
        logging.info("metrics: http://%s:%d/metrics", LOOPBACK, server.server_port)
    try:
        runner.run()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    logging.info("bridge stopped: %s", json.dumps(runner.metrics.snapshot()))
    return 0


def run_quota_gate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        quotas = IotQuotas(**{name: getattr(args, name) for name in QUOTA_FLAGS})
    except ValueError as exc:
        logging.error("refused quotas: %s", exc)
        return 2
    host, _, port = args.broker.rpartition(":")
    gate = QuotaGate((host or LOOPBACK, int(port)), quotas, Ledger(args.ledger))

    def ready(bound: int) -> None:
        logging.info("quota gate on %s:%d in front of %s: %s", LOOPBACK, bound, args.broker, quotas.model_dump())
        if args.port_file is not None:
            args.port_file.write_text(str(bound))

    async def serve() -> None:
        task = asyncio.ensure_future(run_gate(gate, args.port, ready))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())
    logging.info("quota gate stopped: %s", json.dumps(gate.ledger.to_dict()["throttled"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
