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
import math
import re
import shlex
from pathlib import Path
from typing import Any

from rich.console import Console

from processor.config import Settings
from simulator.devices import Fault
from simulator.devices import device_ids as fleet_device_ids
from simulator.fleet import load_fleet
from simulator.integrity import (
    RunKeyError,
    fleet_digest,
    new_run_key,
    read_run_key,
    seal,
    shards_key,
    verified,
    write_key,
)
from simulator.schedule import Constant
from simulator.shard import MAX_SHARDS, Shard, ShardError
from simulator.summary import Recorder
from telemetry.files import InputFileError, read_bounded
from testbed.exceptions import TestbedError
from testbed.lifecycle.stack import Stack
from testbed.paths import REPORTS_DIR
from testbed.runs.quota_account import resend_after
from testbed.runs.reconcile import check_plan
from testbed.runs.runner import RunStart, ScenarioRun, finish_run, run_plan, start_run
from testbed.runs.scenario import Scenario, load_scenario
from testbed.runs.shard_account import MissingShard, ShardAccount
from testbed.stores import Stores

MANIFEST = "shards.json"
# A summary larger than this is not one a shard wrote (a shard of a day-long soak is a few hundred MB;
# parsed JSON takes about ten times its size in memory).
MAX_SUMMARY_BYTES = 512 * 1024**2
MAX_MANIFEST_BYTES = 16 * 1024**2


class ShardsError(TestbedError):
    """A run folder without a usable manifest, or a run that cannot be split as asked."""


def summary_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index}.json"


def run_key_file(stack: Stack, run_id: str) -> Path:
    """Where the run's key is kept: in the stack's state (0600 in 0700), never in the run's folder,
    which the shards write to. It seals the manifest and never leaves this machine."""
    return stack.backend.state_dir / "runs" / f"{run_id}.key"


def shards_key_file(stack: Stack, run_id: str) -> Path:
    """The key the shards seal their summaries with (derived from the run's key): the file to give
    each shard, out of band."""
    return stack.backend.state_dir / "runs" / f"{run_id}.shards.key"


def run_arguments(
    stack: Stack, scenario: Scenario, run_tag: str, key_file: Path, profile_option: str = "--profile"
) -> list[str]:
    """What every publisher of a shard (`simulator run`, or the Locust file, whose rate profile is
    `--rate-profile`: Locust has a --profile) is told: the fleet, its timing, the run tag, the broker,
    and the run key that seals its summary."""
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
        "--run-key-file",
        str(key_file),
    ]
    if not isinstance(scenario.profile, Constant):
        words += [profile_option, scenario.profile.model_dump_json()]
    ack_timeout_s = resend_after(stack, scenario)
    if ack_timeout_s is not None:
        words += ["--ack-timeout", f"{ack_timeout_s:g}"]
    if target.credentials is not None:
        words += ["--broker-secret-file", str(stack.backend.state_dir / "broker-secret")]
    return words


def shard_command(stack: Stack, scenario: Scenario, run_tag: str, shard: Shard, folder: Path, key_file: Path) -> str:
    """The shell command that runs one shard against this stack's broker (the signing key from the
    environment: `SIMULATOR_SIGNING_KEY="$(bin/testbed signing-key)"`; the run key as a file)."""
    summary = str(summary_path(folder, shard.index))
    options = ["--workers", str(scenario.workers), "--shard", str(shard), "--summary", summary]
    words = ["bin/simulator", "run", *run_arguments(stack, scenario, run_tag, key_file), *options]
    return shlex.join(words)


def plan_header(scenario: Scenario) -> dict[str, Any]:
    """What every shard's summary must repeat of the plan: a shard that ran anything else is not this run's."""
    return {
        "seed": scenario.seed,
        "qos": scenario.qos,
        "duration_s": scenario.duration_s,
        "profile": scenario.profile.model_dump(),
        "fleet_sha256": fleet_digest(load_fleet(scenario.fleet)),
        "signed": True,
    }


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
    key = new_run_key(run_key_file(stack, begun.run_id))
    key_file = shards_key_file(stack, begun.run_id)
    write_key(key_file, shards_key(key, begun.run_id))
    plan = [
        {"shard": str(shard), "devices": len(ids), "planned": sum(len(m) for m in ids.values())}
        for shard in (Shard(i, count) for i in range(count))
        for ids in (run_plan(scenario, begun.run_tag, shard),)
    ]
    manifest = {
        "scenario": scenario_name,
        "run_tag": begun.run_tag,
        "count": count,
        "started": begun.started,
        "counters_before": begun.counters_before,
        **plan_header(scenario),
        "plan": plan,
    }
    (folder / MANIFEST).write_text(json.dumps(seal(manifest, key), indent=2) + "\n")
    commands = [shard_command(stack, scenario, begun.run_tag, Shard(i, count), folder, key_file) for i in range(count)]
    return folder, commands


def _manifest(folder: Path, key: bytes) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(read_bounded(path, MAX_MANIFEST_BYTES))
    except FileNotFoundError:
        raise ShardsError(f"{folder} holds no {MANIFEST}: prepare the run with `bin/testbed shards`") from None
    except (OSError, ValueError) as exc:
        raise ShardsError(f"{path} is not readable JSON: {exc}") from None
    kinds = {"scenario": str, "run_tag": str, "count": int, "started": (int, float), "counters_before": dict}
    if not isinstance(manifest, dict):
        raise ShardsError(f"{path} is not a shard manifest (a {type(manifest).__name__}, not an object)")
    wrong = [name for name, kind in kinds.items() if not isinstance(manifest.get(name), kind)]  # type: ignore[arg-type]
    if wrong or not 1 <= manifest["count"] <= MAX_SHARDS:
        raise ShardsError(f"{path} is not a shard manifest (missing or wrong: {', '.join(wrong) or 'all'})")
    if not verified(manifest, key):
        raise ShardsError(f"{path} is not sealed with this run's key: it was changed since `shards` wrote it")
    return manifest


def _summary(path: Path, shard: Shard, run_tag: str, key: bytes) -> tuple[dict[str, Any] | None, str]:
    """A shard's summary, or None and why it cannot be merged."""
    try:
        summary = json.loads(read_bounded(path, MAX_SUMMARY_BYTES))
    except FileNotFoundError:
        return None, f"no {path.name}: the shard did not finish (or never ran)"
    except InputFileError as exc:
        return None, str(exc)
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"{path.name} is not readable JSON ({type(exc).__name__}): a shard that died writing it?"
    if not isinstance(summary, dict) or summary.get("shard") != str(shard) or summary.get("run_tag") != run_tag:
        found = (summary.get("shard"), summary.get("run_tag")) if isinstance(summary, dict) else type(summary).__name__
        return None, f"{path.name} is not shard {shard} of run {run_tag} (it says {found})"
    if not verified(summary, key):
        return None, f"{path.name} is not sealed with this run's key (forged, or run without --run-key-file)"
    needed = ("per_device", "publishes", "sent_per_s", "lateness_s", "ack_latency_s", "failed_by_cause")
    if any(name not in summary for name in needed) or not isinstance(summary["per_device"], dict):
        return None, f"{path.name} lacks what a merge needs ({', '.join(needed)}): written by `simulator run --shard`?"
    return summary, ""


# a key that names a second or a size: a decimal integer a merge can convert at once
_SMALL_INT = re.compile(r"[0-9]{1,15}")


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(type(v) in (int, float) and math.isfinite(v) for v in value)


def _counts_by_key(value: Any, keys: re.Pattern[str] | None = None) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and (keys is None or keys.fullmatch(k)) and _count(v) for k, v in value.items()
    )


_FAULT_TAGS = frozenset(fault.value for fault in Fault)


def _fault_tag(tag: Any) -> bool:
    """One of the simulator's fault tags (`spike:<reading>` names the reading it hit)."""
    return isinstance(tag, str) and (tag in _FAULT_TAGS or tag.startswith(f"{Fault.SPIKE.value}:"))


def summary_problem(summary: dict[str, Any], devices: set[str]) -> str | None:
    """What in a shard's summary (written on another machine) does not hold, or None: counts are
    counts, samples are finite numbers, keys that the merge turns into numbers are small integers,
    every device is one of the shard's, message ids are integers with their due times. Checked before
    anything merges: a corrupt summary neither crashes the merge nor counts devices that are not its
    shard's."""
    for name in ("publishes", "duplicate_sends", "reconnects", "refused_connections"):
        if not _count(summary.get(name)):
            return f"{name} is not a count"
    for name in ("lateness_s", "ack_latency_s"):
        if not _numbers(summary[name]):
            return f"{name} is not a list of finite numbers"
    for name, keys in (("sent_per_s", _SMALL_INT), ("failed_by_cause", None), ("payload_sizes", _SMALL_INT)):
        if name in summary and not _counts_by_key(summary[name], keys):
            return f"{name} is not counts by key"
    sent = summary["lateness_s"] or "first_send" in summary or "last_send" in summary
    if sent and not _numbers([summary.get("first_send"), summary.get("last_send")]):
        return "first_send/last_send are not times"
    for device_id, record in summary["per_device"].items():
        if device_id not in devices:
            return f"device {device_id!r} is not one of this shard's"
        if not isinstance(record, dict) or not _count(record.get("publishes")):
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
            _SMALL_INT.fullmatch(msg_id) and isinstance(tags, list) and all(_fault_tag(t) for t in tags)
            for msg_id, tags in faults.items()
        ):
            return f"device {device_id}: faults are not tags by message id"
    records = summary["per_device"].values()
    if sum(record["publishes"] for record in records) != summary["publishes"]:
        return "publishes is not the sum of its devices' publishes"
    tagged = sum(tags.count(Fault.DUPLICATE.value) for record in records for tags in record["faults"].values())
    if summary["duplicate_sends"] != tagged:
        return f"duplicate_sends {summary['duplicate_sends']} is not the {tagged} sends its faults tag as duplicates"
    return None


def _plan_problem(summary: dict[str, Any], header: dict[str, Any], plan: dict[str, list[int]]) -> str | None:
    """How a shard's summary departs from the run's plan: another seed, QoS, duration, profile or
    fleet, or message ids the plan does not hold (or planned ones it never published)."""
    differ = [
        f"{name} {summary.get(name)!r} (planned {value!r})"
        for name, value in header.items()
        if summary.get(name) != value
    ]
    if differ:
        return f"it ran another plan: {', '.join(differ)}"
    check = check_plan(plan, summary)  # type: ignore[arg-type]
    if not check.ok:
        return (
            f"it published {check.published:,} of {check.planned:,} planned messages "
            f"({len(check.not_published):,} never published, {len(check.unplanned):,} not in the plan)"
        )
    return None


def merge(stack: Stack, folder: Path, console: Console) -> ScenarioRun:
    """Join the shards' summaries in `folder`, account for the missing ones, reconcile, report there.

    A shard counts only if its summary is sealed with the run's key, repeats the run's plan and
    publishes exactly the shard's planned messages; any other is unaccounted with all it planned."""
    try:
        key = read_run_key(run_key_file(stack, folder.name))
    except RunKeyError as exc:
        raise ShardsError(f"{exc}: merge the run on the machine (and state folder) that prepared it") from None
    manifest = _manifest(folder, key)
    scenario = load_scenario(manifest["scenario"])
    fleet = load_fleet(scenario.fleet)
    run_tag, count = manifest["run_tag"], manifest["count"]
    all_ids = fleet_device_ids(fleet, run_tag)
    header = plan_header(scenario)
    changed = [name for name, value in header.items() if manifest.get(name) != value]
    if changed:
        raise ShardsError(
            f"the scenario {manifest['scenario']} is not the one this run was prepared with "
            f"({', '.join(changed)} changed since `shards`): merge it with the scenario as it was"
        )
    key = shards_key(key, folder.name)
    account = ShardAccount(count)
    recorder = Recorder()
    whole: dict[str, list[int]] = {}  # the run's plan: the shards' are disjoint and cover it
    for index in range(count):
        shard = Shard(index, count)
        devices = shard.select(all_ids)
        plan = run_plan(scenario, run_tag, shard)
        whole |= plan
        summary, why = _summary(summary_path(folder, index), shard, run_tag, key)
        problem = None
        if summary is not None:
            problem = summary_problem(summary, set(devices)) or _plan_problem(summary, header, plan)
            why = f"{summary_path(folder, index).name} does not hold: {problem}" if problem else ""
        if summary is None or problem is not None:
            planned = sum(len(ids) for ids in plan.values())
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
        stores=Stores.connect(outputs, stack.client, stack.alert_journal),
        settings=Settings.from_env(function["Environment"]["Variables"]),
        counters_before=manifest["counters_before"],
        started=float(manifest["started"]),
    )
    merged = recorder.to_dict()
    return finish_run(stack, scenario, begun, merged, [], console, folder.parent, shards=account, plan=whole)
