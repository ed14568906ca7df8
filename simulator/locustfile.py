"""The fleet on Locust's distributed runner: `locust -f simulator/locustfile.py --master ...` and one
`--worker` per shard. Each worker runs one user, which publishes shard <worker index>/<shards> of the
fleet with the simulator's own device models and transport; Locust's stats, CSV and HTML report show
every publish acknowledged (its latency from when it was due) or failed. Each worker sends its run
summary to the master over Locust's message channel, and the master writes it into the run's folder
as `shard-<i>.json`, where `bin/testbed merge` reconciles the run as one. A worker that dies
sends none: its shard is reported unaccounted.

`bin/testbed simulate SCENARIO --runner locust --workers N` prepares the run, starts the master
and the workers on this machine and merges; on other machines, start the workers with the same
options and `--master-host`.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import gevent
from flask import redirect, request, session, url_for
from flask_login import UserMixin, login_user
from locust import User, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from locust.web import WebUI

from simulator.cli import parse_profile
from simulator.connection import device_topic
from simulator.devices import Emitted
from simulator.fleet import load_fleet
from simulator.integrity import fleet_digest, read_run_key, seal, verified
from simulator.run import live_run
from simulator.run_config import RunConfig
from simulator.shard import MAX_SHARDS, Shard
from telemetry.credentials import broker_credentials
from telemetry.files import read_bounded
from telemetry.topics import DEVICE_TOPIC_TEMPLATE
from toolkit.cli_help import SEED, count, seconds
from toolkit.settings import SETTINGS

logger = logging.getLogger(__name__)
SUMMARY_MESSAGE = "testbed_summary"
WEB_USER = "operator"
LOGIN_ROUTE = "/testbed_login"
WEB_PASSWORD_MIN_BYTES = 16
WEB_PASSWORD_MAX_BYTES = 4096
# longer than a worker's report interval (locust.runners.WORKER_REPORT_INTERVAL, 3 s)
STATS_GRACE_S = 5.0


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("testbed fleet")
    group.add_argument("--fleet", default="simulator/fleets/smoke.yaml", help="fleet file")
    group.add_argument("--seed", type=SEED, default=1)
    group.add_argument("--duration", type=seconds(), default=30.0, help="seconds of publishing per worker")
    group.add_argument("--qos", type=int, choices=(0, 1), default=1)
    group.add_argument(
        "--ack-timeout", type=seconds(positive=False), default=0.0, help="`simulator run`'s --ack-timeout (0: none)"
    )
    # Locust has a --profile of its own; text, as the master sends its options to the workers
    group.add_argument("--rate-profile", default="constant", help="`simulator run`'s --profile")
    group.add_argument("--run-tag", default="", help="the run tag `bin/testbed shards` named")
    group.add_argument("--shards", type=count(MAX_SHARDS), default=1, help="how many workers (shards) the run has")
    group.add_argument("--broker", default="127.0.0.1:1883", help="host:port of the devices' broker")
    group.add_argument("--broker-secret-file", default="", help="the testbed broker's secret (device passwords)")
    group.add_argument("--topic", default=DEVICE_TOPIC_TEMPLATE, help="each device's topic; {device_id} is replaced")
    group.add_argument("--run-folder", default="", help="master: where shard-<i>.json summaries are written")
    group.add_argument(
        "--run-key-file",
        default="",
        help="the run's key (`bin/testbed shards`): workers seal, the master verifies",
    )


class _Operator(UserMixin):
    """The one user of the web UI."""

    id = WEB_USER


@events.init.add_listener
def _web_login(environment: Environment, web_ui: WebUI | None = None, **_: Any) -> None:
    """Locust's own login page in front of the web UI (`--web-login`): one user, its password from a
    file (a Kubernetes Secret), compared in constant time."""
    if web_ui is None or not environment.parsed_options.web_login:
        return
    if not environment.parsed_options.web_password_file:
        raise SystemExit("--web-login needs --web-password-file: the file holding the web UI's password")
    password = read_bounded(Path(environment.parsed_options.web_password_file), WEB_PASSWORD_MAX_BYTES).strip()
    if len(password) < WEB_PASSWORD_MIN_BYTES:
        raise SystemExit(f"the web UI's password must be at least {WEB_PASSWORD_MIN_BYTES} characters")
    app = web_ui.app
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    web_ui.auth_args = {"username_password_callback": LOGIN_ROUTE}

    @web_ui.login_manager.user_loader
    def load_user(user_id: str) -> _Operator | None:
        return _Operator() if user_id == WEB_USER else None

    @app.route(LOGIN_ROUTE, methods=["POST"])
    def login_submit() -> Any:
        given_user = request.form.get("username", "").encode()
        given = request.form.get("password", "").encode()
        if hmac.compare_digest(given_user, WEB_USER.encode()) & hmac.compare_digest(given, password):
            login_user(_Operator())
            return redirect(url_for("locust.index"))
        session["auth_error"] = "wrong user name or password"
        return redirect(url_for("locust.login"))


@events.init.add_listener
def _collect_summaries(environment: Environment, **_: Any) -> None:
    """The master writes each worker's summary into the run's folder, whole or not at all."""
    if not isinstance(environment.runner, MasterRunner):
        return
    folder = Path(environment.parsed_options.run_folder)
    key = read_run_key(Path(environment.parsed_options.run_key_file))
    received: set[int] = set()

    def on_summary(environment: Environment, msg: Any, **__: Any) -> None:
        data = msg.data if isinstance(msg.data, dict) else {}
        index, summary = data.get("index"), data.get("summary")
        if type(index) is not int or not 0 <= index < environment.parsed_options.shards or index in received:
            logger.error("a summary for shard %r is not one this run expects (or was written): dropped", index)
            return
        # anyone who reaches the master's port can send a message: only a summary sealed with the run's
        # key, for its own shard, is written (the merge checks it against the plan again)
        shard = f"{index}/{environment.parsed_options.shards}"
        if not isinstance(summary, dict) or not verified(summary, key) or summary.get("shard") != shard:
            logger.error("a summary for shard %d is not sealed with this run's key for that shard: dropped", index)
            return
        target = folder / f"shard-{index}.json"
        partial = target.with_name(target.name + ".partial")
        try:
            partial.write_text(json.dumps(summary) + "\n")
            os.replace(partial, target)
        except (OSError, TypeError, ValueError) as exc:  # `merge` then reports the shard unaccounted
            logger.error("the summary of shard %d was not written: %s", index, exc)
            return
        received.add(index)
        if len(received) >= environment.parsed_options.shards and environment.runner is not None:
            # the workers' last statistics come with their next report (every 3 s): wait for it
            gevent.spawn_later(STATS_GRACE_S, environment.runner.quit)

    environment.runner.register_message(SUMMARY_MESSAGE, on_summary)


class FleetShard(User):
    """One per worker: the worker's shard of the fleet, published in real time."""

    @task
    def publish_shard(self) -> None:
        options = self.environment.parsed_options
        runner = self.environment.runner
        index = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        if not 0 <= index < options.shards:
            # a worker that replaced one that died gets the next index: publishing another's slice again
            # would send its messages twice, so it publishes nothing (the dead one's shard is unaccounted)
            logger.error(
                "worker index %d is beyond the run's %d shards: this worker publishes nothing", index, options.shards
            )
            raise StopUser()
        shard = Shard(index, options.shards)
        key = read_run_key(Path(options.run_key_file))
        host, _, port = options.broker.rpartition(":")
        secret = Path(options.broker_secret_file).read_bytes().strip() if options.broker_secret_file else None
        fire = self.environment.events.request.fire

        def acked(emitted: Emitted, latency_s: float) -> None:
            fire(
                request_type="MQTT",
                name=f"publish qos{options.qos}",
                response_time=latency_s * 1000,
                response_length=len(emitted.payload),
                exception=None,
                context={},
            )

        def failed(emitted: Emitted, cause: str) -> None:
            fire(
                request_type="MQTT",
                name=f"publish qos{options.qos}",
                response_time=0,
                response_length=len(emitted.payload),
                exception=RuntimeError(cause),
                context={},
            )

        config = RunConfig(
            fleet=load_fleet(Path(options.fleet)),
            seed=options.seed,
            key=SETTINGS["SIMULATOR_SIGNING_KEY"].text().encode(),
            duration_s=options.duration,
            profile=parse_profile(options.rate_profile),
            qos=options.qos,
            ack_timeout_s=float(options.ack_timeout) or None,
            host=host,
            port=int(port),
            credentials=broker_credentials(secret) if secret is not None else None,
            run_tag=options.run_tag,
            topic=device_topic(options.topic),
            shard=shard,
            on_ack=acked,
            on_fail=failed,
        )
        summary = live_run(config)
        fields = {
            "shard": str(shard),
            "run_tag": options.run_tag,
            "seed": options.seed,
            "qos": options.qos,
            "duration_s": options.duration,
            "profile": config.profile.model_dump(),
            "fleet_sha256": fleet_digest(config.fleet),
            "signed": config.sign,
        }
        message = {"index": shard.index, "summary": seal({**summary, **fields}, key)}
        if isinstance(runner, WorkerRunner):
            runner.send_message(SUMMARY_MESSAGE, message)
        time.sleep(1)  # let the message leave before the user stops
        raise StopUser()
