"""`make simulate SCENARIO=...`: run a scenario against the local stack, reconcile, report."""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from processor.config import Settings
from processor.store import StoredReading
from simulator.connection import device_topic
from simulator.devices import Fault
from simulator.devices import device_ids as fleet_device_ids
from simulator.fleet import load_fleet
from simulator.progress import WorkerProgress
from simulator.run import live_run_with_progress, planned_messages
from simulator.run_config import RunConfig
from simulator.shard import Shard
from simulator.summary import RunSummary
from telemetry.outputs import StackOutputs
from testbed.cost.bill import cost_section
from testbed.cost.measure import RunFacts, cost_or_reason
from testbed.cost.prices import PriceError, load_prices
from testbed.lifecycle.stack import Stack
from testbed.paths import REPORTS_DIR
from testbed.runs.api_faults import ApiFaults
from testbed.runs.faults import (
    FaultSchedule,
    FaultSpec,
    InjectedFault,
    archived_deliveries,
    fault_tallies,
    throttle_processor,
)
from testbed.runs.hops import ARCHIVE_HOP, hop_samples
from testbed.runs.provenance import provenance
from testbed.runs.quota_account import quota_account, resend_after
from testbed.runs.reconcile import check_alerts, check_plan, expected_stored, identify, reconcile
from testbed.runs.report import Check, RunOutcome, checks, write_report
from testbed.runs.scenario import Scenario, ScenarioError
from testbed.runs.shard_account import ShardAccount
from testbed.stores import Stores, run_items, wait_for_drain

logger = logging.getLogger(__name__)
# an interrupted run drains this long at most: the user asked it to end
INTERRUPTED_DRAIN_S = 30.0


def _publish_with_progress(stack: Stack, config: RunConfig, console: Console) -> RunSummary:
    started = time.time()
    before = stack.backend.ingress_counters()
    bridge_start = before.get("forwarded", 0) + before.get("dead_lettered", 0)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), TextColumn("{task.fields[stats]}"))
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("publishing", total=config.duration_s, stats="")

        def show(total: WorkerProgress) -> None:
            elapsed = time.time() - started
            bridge = stack.backend.ingress_counters()
            into_pipeline = bridge.get("forwarded", 0) + bridge.get("dead_lettered", 0) - bridge_start
            bar.update(
                task,
                completed=min(elapsed, config.duration_s),
                stats=(
                    f"{total.line(elapsed)}  {into_pipeline:,.0f} into the pipeline  "
                    f"{bridge.get('queued', 0):,.0f} queued in the bridge"
                ),
            )

        return live_run_with_progress(config, show)


def fault_schedule(stack: Stack, specs: tuple[FaultSpec, ...], function_name: str, seed: int = 0) -> FaultSchedule:
    """The scenario's faults, refused up front if this backend cannot inject one of them."""
    refused = {
        f.label: why
        for f in specs
        if f.target not in ("processor", "api") and (why := stack.backend.fault_refusal(f.target, f.action)) is not None
    }
    if refused:
        reasons = "; ".join(f"{label} ({why})" for label, why in sorted(refused.items()))
        raise ScenarioError(
            f"the {stack.backend.name} backend cannot inject {reasons}: run this scenario on the embedded backend"
        )
    proxy = stack.backend.fault_proxy_url()
    api = ApiFaults(proxy) if proxy is not None else None
    if api is not None:
        api.seed(seed)
    elif any(f.target == "api" for f in specs):
        raise ScenarioError(
            "this scenario's API faults need the API fault proxy: `make simulate` turns it on, "
            "`--no-up` needs a stack brought up with API_FAULTS=on"
        )

    def inject(spec: FaultSpec) -> dict[str, int] | None:
        if spec.target == "api":
            assert api is not None
            return api.inject(spec)
        if spec.target == "processor":
            throttle_processor(stack.client("lambda"), function_name, spec.down_s)
        else:
            stack.backend.inject_fault(spec.target, spec.action, spec.down_s)
        return None

    return FaultSchedule(list(specs), inject)


def _archive_hop(stores: Stores, timed: list[StoredReading], started: float) -> np.ndarray:
    """Milliseconds from each reading's write to its archive object (none when the archive cannot be
    read: the run's report matters more than one hop). Clamped at 0: S3 on AWS stamps to the second."""
    try:
        archived = stores.archive_times({(i.device_id, i.msg_id) for i in timed}, started - 5)
    except (BotoCoreError, ClientError) as exc:
        logger.warning("the archive hop is not timed: %s", exc)
        return np.array([])
    return np.array(
        [
            max(archived[(i.device_id, i.msg_id)] * 1000 - i.stored_at_ms, 0.0)
            for i in timed
            if (i.device_id, i.msg_id) in archived
        ]
    )


@dataclass(frozen=True)
class ScenarioRun:
    """A finished run, as code reads it (the pytest plugin, the CLI): its report folder, what it
    measured, and each expectation with whether it held."""

    folder: Path
    outcome: RunOutcome

    @property
    def checks(self) -> dict[str, Check]:
        return checks(self.outcome)

    @property
    def passed(self) -> bool:
        return all(check.held for check in self.checks.values())

    @property
    def failures(self) -> dict[str, str]:
        """The checks that did not hold, each with what was measured (an assertion message)."""
        return {name: check.measured for name, check in self.checks.items() if not check.held}


@dataclass
class RunStart:
    """What a run knows before its first message: its devices (provisioned), the stores it reconciles
    against, the processor's settings, the bridge's counters and the time."""

    run_id: str
    run_tag: str
    device_ids: list[str]
    outputs: StackOutputs
    stores: Stores
    settings: Settings
    counters_before: dict[str, float]
    started: float
    # the emulator's process as the run began: a backend that keeps no state loses all if it changes
    emulator_pid: int | None = None
    # where the run's report comes from, read as it began (a fleet file edited during a run is not it)
    provenance: dict[str, Any] = field(default_factory=dict)


def start_run(stack: Stack, scenario: Scenario, run_tag: str | None = None) -> RunStart:
    outputs = stack.outputs()
    tag = run_tag or uuid.uuid4().hex[:4]
    device_ids = fleet_device_ids(load_fleet(scenario.fleet), tag)
    stack.backend.provision_devices(device_ids)
    # a cold processor's first invocations take seconds: they belong to no run's latency (or verdict)
    stack.warm_processor()
    stores = Stores.connect(outputs, stack.client, stack.alert_journal)
    function = stack.client("lambda").get_function_configuration(FunctionName=outputs.processor_function_name)
    return RunStart(
        run_id=f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{scenario.name}-{tag}",
        run_tag=tag,
        device_ids=device_ids,
        outputs=outputs,
        stores=stores,
        settings=Settings.from_env(function["Environment"]["Variables"]),
        counters_before=stack.backend.ingress_counters(),
        started=time.time(),
        emulator_pid=stack.backend.emulator_pid(),
        provenance=provenance(stack, scenario),
    )


def run_scenario(stack: Stack, scenario: Scenario, console: Console, reports_dir: Path = REPORTS_DIR) -> ScenarioRun:
    """Run, wait for the drain, reconcile, and write reports/<run id>/."""
    faults = fault_schedule(stack, scenario.faults, stack.outputs().processor_function_name, scenario.seed)
    ack_timeout_s = resend_after(stack, scenario)
    key = stack.signing_key()
    begun = start_run(stack, scenario)
    target = stack.backend.mqtt_target()
    # Ctrl-C sets it: the fleet stops publishing and drains, and the report covers what was sent
    stop = mp.get_context("fork").Event()
    faults.start(at=begun.started + 1.0)  # the simulator's clock starts about a second after it is called
    try:
        summary = _publish_with_progress(
            stack,
            RunConfig.for_target(
                target,
                fleet=load_fleet(scenario.fleet),
                seed=scenario.seed,
                key=key,
                duration_s=scenario.duration_s,
                profile=scenario.profile,
                qos=scenario.qos,
                workers=scenario.workers,
                ack_timeout_s=ack_timeout_s,
                run_tag=begun.run_tag,
                topic=device_topic(
                    stack.backend.device_topic, begun.outputs.iot_rule_name if scenario.basic_ingest else None
                ),
                stop=stop,
            ),
            console,
        )
    except BaseException:
        faults.cancel()
        raise
    if stop.is_set():
        faults.cancel()
        console.print(
            f"[bold yellow]interrupted:[/] publishing stopped; the pipeline drains for up to {INTERRUPTED_DRAIN_S:g} s "
            "and the report covers what was sent (Ctrl-C again stops at once)"
        )
    return finish_run(stack, scenario, begun, summary, faults.join(), console, reports_dir, interrupted=stop.is_set())


def finish_run(
    stack: Stack,
    scenario: Scenario,
    begun: RunStart,
    summary: RunSummary,
    injected: list[InjectedFault],
    console: Console,
    reports_dir: Path = REPORTS_DIR,
    shards: ShardAccount | None = None,
    plan: dict[str, list[int]] | None = None,
    interrupted: bool = False,
) -> ScenarioRun:
    """Wait for the drain, reconcile what `summary` says was sent against the stores, write the report;
    `plan`: the run's planned ids where the caller has them already (a merge, from its shards')."""
    outputs, stores, settings, device_ids, started = (
        begun.outputs,
        begun.stores,
        begun.settings,
        begun.device_ids,
        begun.started,
    )
    run_id, counters_before = begun.run_id, begun.counters_before
    expected = expected_stored(summary)
    since_ms = int(started * 1000) - 1000
    emulator_lost = _emulator_lost(stack, begun.emulator_pid)
    items: list[StoredReading] = []
    quarantined: list[dict[str, Any]] = []
    dead: list[str] = []
    alerts: list[dict[str, Any]] = []
    drained = False
    if emulator_lost is None:  # else the stores are gone (or empty): nothing to wait for or read
        drain_s = min(scenario.drain_timeout_s, INTERRUPTED_DRAIN_S) if interrupted else scenario.drain_timeout_s
        try:
            items, drained = wait_for_drain(stack, stores, device_ids, since_ms, expected, drain_s, console)
        except KeyboardInterrupt:  # Ctrl-C while draining: the report covers what is stored now
            if interrupted:
                raise  # the second: stop at once
            interrupted = True
            console.print("[bold yellow]interrupted:[/] the report covers what is stored now (Ctrl-C again stops)")
            items, drained = run_items(stores, device_ids, since_ms), False
        time.sleep(2)  # the last quarantine writes and alerts trail the readings
        quarantined = [
            q for q in stores.quarantined(since=started - 5) if any(f'"{d}"' in q["body"] for d in device_ids)
        ]
        dead = [
            letter.payload
            for letter in stores.dead_letters(since_ms)
            if any(f'"{d}"' in letter.payload for d in device_ids)
        ]
        alerts = stores.alerts_of(device_ids)
    else:
        console.print(f"[bold red]error:[/] {escape(emulator_lost)}")
    stack.backend.release_devices(device_ids)
    if shards is not None:
        shards.count_stored_anyway([(i.device_id, i.msg_id) for i in items])

    # a missing shard's stored messages are its own count (stored anyway), not the merged run's
    away = {device_id for missing in shards.missing for device_id in missing.devices} if shards is not None else set()
    gate = stack.backend.quota_gate()
    quotas = quota_account(gate[0], gate[1], summary, device_ids, started) if gate is not None else None
    # at QoS 0 a throttled message is dropped before the broker: refused, not lost (at QoS 1 it is sent again)
    throttled = quotas.throttled_ids if quotas is not None and scenario.qos == 0 else frozenset()
    stored = [(i.device_id, i.msg_id) for i in items if i.device_id not in away]
    result = reconcile(summary, stored, quarantined, dead, throttled)
    counters_after = stack.backend.ingress_counters()
    # the bridge's counters live in its process: a fault that restarted it, or any that reset them, leaves
    # no count of this run's actions to read
    forwarded = (
        int(counters_after["forwarded"] - counters_before["forwarded"])
        if not injected
        and "forwarded" in counters_before
        and "forwarded" in counters_after
        and counters_after.get("received", 0) >= counters_before.get("received", 0)
        else None
    )
    facts = RunFacts(
        summary,
        result.items_stored,
        result.duplicates_dropped,
        device_ids,
        started,
        scenario.basic_ingest,
        forwarded,
        len(quarantined),
        len(alerts),
    )
    stored_at = np.array([i.stored_at_ms for i in items], dtype=float) / 1000
    faults_report: list[dict[str, Any]] = []
    if injected and emulator_lost is None:
        deliveries = archived_deliveries(stores, set(device_ids), started - 5)
        in_dlq = frozenset(ident for body in dead if (ident := identify(body)) is not None)
        faults_report = fault_tallies(injected, summary, result.lost, deliveries, stored_at, in_dlq)
    # a device whose clock was skewed on purpose stamps its readings off by seconds: not a hop's latency
    skewed = {
        (device_id, int(msg_id))
        for device_id, record in summary["per_device"].items()
        for msg_id, tags in record["faults"].items()
        if Fault.CLOCK_SKEW.value in tags
    }
    timed = [i for i in items if (i.device_id, i.msg_id) not in skewed]
    hops = hop_samples(
        [i.ts for i in timed],
        [i.arrived_at_ms for i in timed],
        [i.invoked_at_ms for i in timed],
        [i.stored_at_ms for i in timed],
    )
    hops[ARCHIVE_HOP] = _archive_hop(stores, timed, started) if outputs.archive_bucket_name and timed else np.array([])
    outcome = RunOutcome(
        plan=check_plan(plan if plan is not None else run_plan(scenario, begun.run_tag), summary),
        broker_refusals=stack.backend.broker_refusals(started),
        emulator=stack.backend.emulator(),
        emulator_lost=emulator_lost,
        interrupted=interrupted,
        run_id=run_id,
        scenario=scenario,
        ingress=stack.ingress,
        started=started,
        summary=summary,
        result=result,
        alert_check=check_alerts(items, alerts, settings.thresholds, settings.alert_cooldown_seconds),
        alerts=len(alerts),
        drained=drained,
        stored_at_s=stored_at,
        latency_ms=np.array([i.stored_at_ms - i.ts for i in items], dtype=float),
        emulator_rss_mb=stack.backend.emulator_rss_mb(),
        faults=faults_report,
        cost=run_cost(stack, outputs, facts),
        hops_ms=hops,
        shards=shards.as_dict() if shards is not None else None,
        provenance=begun.provenance or provenance(stack, scenario),
        quotas=quotas,
    )
    folder = reports_dir / run_id
    write_report(folder, outcome)
    return ScenarioRun(folder, outcome)


def _emulator_lost(stack: Stack, pid_at_start: int | None) -> str | None:
    """Why nothing of the run can be read back, when the emulator stopped or was replaced during it and
    keeps no state (LocalStack's free edition): said as the emulator's loss, not the pipeline's."""
    if pid_at_start is None or stack.backend.keeps_state:
        return None
    now = stack.backend.emulator_pid()
    if now == pid_at_start:
        return None
    what = "was started again" if now is not None else "is not running"
    return (
        f"{stack.backend.emulator()} stopped during the run (PID {pid_at_start}; it {what}): it keeps no state, "
        "so every resource and stored item is gone. Every message of the run is counted lost to the emulator, "
        f"not to the pipeline; `make up BACKEND={stack.backend.name}` deploys the stack again"
    )


def run_plan(scenario: Scenario, run_tag: str, shard: Shard | None = None) -> dict[str, list[int]]:
    """Each device's planned message ids for this scenario and run (of one shard, if given)."""
    config = RunConfig(
        fleet=load_fleet(scenario.fleet),
        seed=scenario.seed,
        key=b"",
        duration_s=scenario.duration_s,
        profile=scenario.profile,
        run_tag=run_tag,
        shard=shard,
    )
    return planned_messages(config)


def run_cost(stack: Stack, outputs: StackOutputs, facts: RunFacts) -> dict[str, Any]:
    """The report's cost section, or the reason it has none (the run's report is written either way)."""
    traffic = cost_or_reason(stack, outputs, facts)
    if isinstance(traffic, str):
        return {"error": traffic}
    try:
        return cost_section(traffic, load_prices(outputs.region))
    except PriceError as exc:
        return {"error": str(exc)}
