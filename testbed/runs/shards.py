"""A run split into shards that run anywhere (other machines, a Kubernetes Indexed Job, a CI matrix),
then merged and reconciled as one run.

`prepare` provisions the run's devices and writes the run's manifest (`shards.json`) into its report
folder with the command for each shard; each shard writes its summary there as `shard-<i>.json`;
`merge` joins the summaries and reconciles them against the stack exactly as a local run is. A shard
whose summary is missing or unreadable is not a silent shortfall: its devices and the messages its
dry run says it would have sent are reported as unaccounted, and the run fails.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from processor.config import Settings
from simulator.devices import device_ids as fleet_device_ids
from simulator.fleet import load_fleet
from simulator.run import RunConfig, dry_run
from simulator.schedule import Constant
from simulator.shard import MAX_SHARDS, Shard, ShardError
from simulator.summary import Recorder
from testbed.exceptions import TestbedError
from testbed.lifecycle.stack import Stack
from testbed.paths import REPORTS_DIR
from testbed.runs.runner import RunStart, ScenarioRun, finish_run, start_run
from testbed.runs.scenario import Scenario, load_scenario
from testbed.runs.stores import Stores

MANIFEST = "shards.json"
# A summary larger than this is not one a shard wrote (a shard of a day-long soak is a few hundred MB).
MAX_SUMMARY_BYTES = 2 * 1024**3


class ShardsError(TestbedError):
    """A run folder without a usable manifest, or a run that cannot be split as asked."""


def summary_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index}.json"


@dataclass
class MissingShard:
    shard: Shard
    reason: str
    devices: list[str]
    # what the shard's dry run publishes: what went unaccounted
    planned: int
    stored_anyway: int = 0


@dataclass
class ShardAccount:
    """Which shards' summaries were merged, and what the missing ones would have sent."""

    count: int
    merged: list[str] = field(default_factory=list)
    missing: list[MissingShard] = field(default_factory=list)

    def count_stored_anyway(self, stored: list[tuple[str, int]]) -> None:
        """A shard killed mid-run leaves stored messages nobody's summary names: count them per shard."""
        for missing in self.missing:
            mine = set(missing.devices)
            missing.stored_anyway = sum(1 for device_id, _ in set(stored) if device_id in mine)

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "merged": self.merged,
            "missing": [
                {
                    "shard": str(m.shard),
                    "reason": m.reason,
                    "devices": len(m.devices),
                    "planned_messages": m.planned,
                    "stored_anyway": m.stored_anyway,
                }
                for m in self.missing
            ],
        }


def run_arguments(stack: Stack, scenario: Scenario, run_tag: str, profile_option: str = "--profile") -> list[str]:
    """What every publisher of a shard (`simulator run`, or the Locust file, whose rate profile is
    `--rate-profile`: Locust has a --profile) is told: the fleet, its timing, the run tag, the broker."""
    target = stack.backend.mqtt_target()
    words = [
        "--fleet",
        str(scenario.fleet),
        "--seed",
        str(scenario.seed),
        "--duration",
        f"{scenario.duration_s:g}",
        "--qos",
        str(scenario.qos),
        "--run-tag",
        run_tag,
        "--broker",
        f"{target.host}:{target.port}",
        "--topic",
        stack.backend.device_topic,
    ]
    if not isinstance(scenario.profile, Constant):
        words += [profile_option, scenario.profile.model_dump_json()]
    if target.credentials is not None:
        words += ["--broker-secret-file", str(stack.backend.state_dir / "broker-secret")]
    return words


def shard_command(stack: Stack, scenario: Scenario, run_tag: str, shard: Shard, folder: Path) -> str:
    """The shell command that runs one shard against this stack's broker (the signing key from the
    environment: `SIMULATOR_SIGNING_KEY="$(python -m testbed signing-key)"`)."""
    summary = str(summary_path(folder, shard.index))
    options = ["--workers", str(scenario.workers), "--shard", str(shard), "--summary", summary]
    return shlex.join(["python", "-m", "simulator", "run", *run_arguments(stack, scenario, run_tag), *options])


def prepare(stack: Stack, scenario_name: str, count: int, reports_dir: Path = REPORTS_DIR) -> tuple[Path, list[str]]:
    """Provision the run's devices, write its manifest; the run's folder and each shard's command."""
    scenario = load_scenario(scenario_name)
    if scenario.faults:
        raise ShardsError(f"scenario {scenario.name} injects faults, which only a local run can time: run it whole")
    if scenario.basic_ingest:
        raise ShardsError(f"scenario {scenario.name} publishes through Basic Ingest: run it whole")
    fleet = load_fleet(scenario.fleet)
    try:
        Shard(count - 1, count).select(fleet_device_ids(fleet))
    except ShardError as exc:
        raise ShardsError(str(exc)) from None
    begun = start_run(stack, scenario)
    folder = reports_dir / begun.run_id
    folder.mkdir(parents=True)
    manifest = {
        "scenario": scenario_name,
        "run_tag": begun.run_tag,
        "count": count,
        "started": begun.started,
        "counters_before": begun.counters_before,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    commands = [shard_command(stack, scenario, begun.run_tag, Shard(i, count), folder) for i in range(count)]
    return folder, commands


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardsError(f"{folder} holds no {MANIFEST}: prepare the run with `python -m testbed shards`") from None
    except (OSError, ValueError) as exc:
        raise ShardsError(f"{path} is not readable JSON: {exc}") from None
    kinds = {"scenario": str, "run_tag": str, "count": int, "started": (int, float), "counters_before": dict}
    if not isinstance(manifest, dict):
        raise ShardsError(f"{path} is not a shard manifest (a {type(manifest).__name__}, not an object)")
    wrong = [name for name, kind in kinds.items() if not isinstance(manifest.get(name), kind)]  # type: ignore[arg-type]
    if wrong or not 1 <= manifest["count"] <= MAX_SHARDS:
        raise ShardsError(f"{path} is not a shard manifest (missing or wrong: {', '.join(wrong) or 'all'})")
    return manifest


def _summary(path: Path, shard: Shard, run_tag: str) -> tuple[dict[str, Any] | None, str]:
    """A shard's summary, or None and why it cannot be merged."""
    try:
        if path.stat().st_size > MAX_SUMMARY_BYTES:
            return None, f"{path.name} is larger than {MAX_SUMMARY_BYTES:,} bytes"
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"no {path.name}: the shard did not finish (or never ran)"
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"{path.name} is not readable JSON ({type(exc).__name__}): a shard that died writing it?"
    if not isinstance(summary, dict) or summary.get("shard") != str(shard) or summary.get("run_tag") != run_tag:
        found = (summary.get("shard"), summary.get("run_tag")) if isinstance(summary, dict) else type(summary).__name__
        return None, f"{path.name} is not shard {shard} of run {run_tag} (it says {found})"
    needed = ("per_device", "published", "sent_per_s", "lateness_s", "ack_latency_s", "failed_by_cause")
    if any(name not in summary for name in needed) or not isinstance(summary["per_device"], dict):
        return None, f"{path.name} lacks what a merge needs ({', '.join(needed)}): written by `simulator run --shard`?"
    return summary, ""


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(type(v) in (int, float) for v in value)


def _counts_by_key(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and _count(v) for k, v in value.items())


def summary_problem(summary: dict[str, Any], devices: set[str]) -> str | None:
    """What in a shard's summary (written on another machine) does not hold, or None: counts are
    counts, samples are numbers, every device is one of the shard's, message ids are integers with
    their due times. Checked before anything merges: a corrupt summary neither crashes the merge nor
    counts devices that are not its shard's."""
    for name in ("published", "reconnects", "connect_errors"):
        if name in summary and not _count(summary[name]):
            return f"{name} is not a count"
    for name in ("lateness_s", "ack_latency_s"):
        if not _numbers(summary[name]):
            return f"{name} is not a list of numbers"
    for name in ("sent_per_s", "failed_by_cause", "payload_sizes"):
        if name in summary and not _counts_by_key(summary[name]):
            return f"{name} is not counts by key"
    if summary["published"] and not all(type(summary.get(n)) in (int, float) for n in ("first_send", "last_send")):
        return "first_send/last_send are not times"
    for device_id, record in summary["per_device"].items():
        if device_id not in devices:
            return f"device {device_id!r} is not one of this shard's"
        if not isinstance(record, dict) or not _count(record.get("published")):
            return f"device {device_id}: no count of what it published"
        acked, due, failed = record.get("acked"), record.get("acked_due"), record.get("failed")
        if not (
            isinstance(acked, list)
            and isinstance(due, list)
            and all(type(a) is int for a in acked)
            and _numbers(due)
            and len(due) == len(acked)
        ):
            return f"device {device_id}: acked/acked_due are not message ids with their due times"
        if not (isinstance(failed, list) and all(type(f) is int for f in failed)):
            return f"device {device_id}: failed is not message ids"
        faults = record.get("faults")
        if not isinstance(faults, dict) or not all(
            isinstance(tags, list) and all(isinstance(t, str) for t in tags) for tags in faults.values()
        ):
            return f"device {device_id}: faults are not tags by message id"
    return None


def merge(stack: Stack, folder: Path, console: Console) -> ScenarioRun:
    """Join the shards' summaries in `folder`, account for the missing ones, reconcile, report there."""
    manifest = _manifest(folder)
    scenario = load_scenario(manifest["scenario"])
    fleet = load_fleet(scenario.fleet)
    run_tag, count = manifest["run_tag"], manifest["count"]
    all_ids = fleet_device_ids(fleet, run_tag)
    account = ShardAccount(count)
    recorder = Recorder()
    for index in range(count):
        shard = Shard(index, count)
        devices = shard.select(all_ids)
        summary, reason = _summary(summary_path(folder, index), shard, run_tag)
        problem = summary_problem(summary, set(devices)) if summary is not None else None
        if summary is None or problem is not None:
            config = RunConfig(
                fleet=fleet,
                seed=scenario.seed,
                key=b"",
                duration_s=scenario.duration_s,
                profile=scenario.profile,
                run_tag=run_tag,
                sign=False,
                shard=shard,
            )
            planned = dry_run(config, Path(os.devnull))["published"]
            why = reason if summary is None else f"{summary_path(folder, index).name} does not hold: {problem}"
            account.missing.append(MissingShard(shard, why, devices, planned))
            continue
        recorder.merge(summary)  # type: ignore[arg-type]
        account.merged.append(str(shard))
    outputs = stack.outputs()
    function = stack.client("lambda").get_function_configuration(FunctionName=outputs.processor_function_name)
    begun = RunStart(
        run_id=folder.name,
        run_tag=run_tag,
        device_ids=all_ids,
        outputs=outputs,
        stores=Stores.connect(outputs, stack.client),
        settings=Settings.from_env(function["Environment"]["Variables"]),
        counters_before=manifest["counters_before"],
        started=float(manifest["started"]),
    )
    return finish_run(stack, scenario, begun, recorder.to_dict(), [], console, folder.parent, shards=account)
