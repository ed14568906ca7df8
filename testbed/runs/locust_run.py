"""A sharded run on Locust's distributed runner, on this machine: one Locust master and one worker per
shard (simulator/locustfile.py), all on loopback, then the testbed's merge. Locust lives in a venv of
its own (`.venv-locust`): it monkey-patches the standard library with gevent at import."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from testbed.exceptions import TestbedError
from testbed.lifecycle.ports import free_port
from testbed.lifecycle.stack import Stack
from testbed.paths import REPORTS_DIR, ROOT
from testbed.runs.runner import ScenarioRun
from testbed.runs.scenario import load_scenario
from testbed.runs.shards import MANIFEST, merge, prepare, run_arguments, shards_key_file

LOCUST = ROOT / ".venv-locust" / "bin" / "locust"
LOCUSTFILE = ROOT / "simulator" / "locustfile.py"
LOOPBACK = "127.0.0.1"
# After its publishing, a worker drains its acknowledgements and sends its summary; past this the
# master ends the test whatever it received, and a shard without a summary is unaccounted.
GRACE_S = 30


@dataclass
class LocustRun:
    folder: Path
    master: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]

    def wait(self, timeout_s: float) -> None:
        """The master ends the test; workers that outlive it are ended (they are ours, by PID)."""
        try:
            self.master.wait(timeout=timeout_s)
        finally:
            end([self.master, *self.workers])


def end(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate those still running, then kill any that do not exit within 10 s."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start(stack: Stack, scenario_name: str, workers: int, reports_dir: Path = REPORTS_DIR) -> LocustRun:
    """Prepare the run (devices provisioned, manifest written), start the master and the workers."""
    if not LOCUST.exists():
        raise TestbedError(f"Locust is not installed at {LOCUST}: `make .venv-locust/.installed` installs it")
    scenario = load_scenario(scenario_name)
    if stack.backend.mqtt_target().tls is not None:  # before any device is provisioned
        raise TestbedError("the Locust runner connects with the broker's device passwords; iot ingress uses X.509")
    folder, _ = prepare(stack, scenario_name, workers, reports_dir)
    run_tag = json.loads((folder / MANIFEST).read_text())["run_tag"]
    common = [
        "-f",
        str(LOCUSTFILE),
        *run_arguments(stack, scenario, run_tag, shards_key_file(stack, folder.name), "--rate-profile"),
        "--shards",
        str(workers),
    ]
    env = {**os.environ, "SIMULATOR_SIGNING_KEY": stack.signing_key().decode()}
    port = free_port()
    log = (folder / "locust.log").open("ab")
    started: list[subprocess.Popen[bytes]] = []
    try:
        return _launch(common, env, port, folder, workers, int(scenario.duration_s), log, started)
    except BaseException:  # a launch that failed half way (or Ctrl-C) leaves none of ours running
        end(started)
        raise
    finally:
        log.close()  # the children hold their own descriptors


def _launch(
    common: list[str],
    env: dict[str, str],
    port: int,
    folder: Path,
    workers: int,
    duration_s: int,
    log: Any,
    started: list[subprocess.Popen[bytes]],
) -> LocustRun:
    master = subprocess.Popen(
        [
            str(LOCUST),
            *common,
            "--master",
            "--headless",
            "--master-bind-host",
            LOOPBACK,
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(workers),
            "--users",
            str(workers),
            "--spawn-rate",
            str(workers),
            "--run-time",
            f"{duration_s + GRACE_S}s",
            "--run-folder",
            str(folder),
            "--csv",
            str(folder / "locust"),
            "--html",
            str(folder / "locust.html"),
            "--only-summary",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    started.append(master)
    for _ in range(workers):
        started.append(
            subprocess.Popen(
                [str(LOCUST), *common, "--worker", "--master-host", LOOPBACK, "--master-port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return LocustRun(folder, master, started[1:])


def run(
    stack: Stack, scenario_name: str, workers: int, console: Console, reports_dir: Path = REPORTS_DIR
) -> ScenarioRun:
    """The whole run: Locust publishes, the testbed merges the workers' summaries and reconciles."""
    locust = start(stack, scenario_name, workers, reports_dir)
    console.print(f"Locust: master and {workers} workers on {LOOPBACK}; log {locust.folder / 'locust.log'}")
    locust.wait(load_scenario(scenario_name).duration_s + GRACE_S + 60)
    return merge(stack, locust.folder, console)
