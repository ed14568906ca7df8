"""Infrastructure faults a scenario schedules during its load, and what each one cost.

A fault hits a part of the local stack (the broker, the rule bridge, the emulator), the processor
(throttled through the Lambda API) or an AWS API (`api`: a service's calls fail with AWS's error, or
slow down, through the API fault proxy) at a time into the run; the run's report then accounts for
the messages around it: acknowledged, lost, dead-lettered, duplicated, and how long until the
pipeline stored at its earlier rate again; for an API fault also the calls it failed and how the
SDK took them (retried, or gave up).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fault_proxy.rules import MAX_LATENCY_MS, FaultRule
from fault_proxy.rules import FaultError as ApiError
from simulator.summary import RunSummary
from testbed.exceptions import TestbedError
from testbed.stores import Stores, archived_key

logger = logging.getLogger(__name__)

Target = Literal["broker", "bridge", "emulator", "processor", "api"]
Action = Literal["kill", "pause", "restart", "throttle", "fail", "delay"]
# What each target can suffer. kill: SIGKILL, then a restart after `down_s`; pause: SIGSTOP for
# `down_s`, then SIGCONT; restart: a graceful stop (state saved) and start; throttle: the
# processor's reserved concurrency set to 0 for `down_s`; fail / delay: for `down_s`, a share
# (`probability`) of an API's calls answered with `error` / slowed by `latency_ms`.
ACTIONS: dict[str, tuple[str, ...]] = {
    "broker": ("kill", "pause"),
    "bridge": ("kill", "pause"),
    "emulator": ("kill", "pause", "restart"),
    "processor": ("throttle",),
    "api": ("fail", "delay"),
}
API_FIELDS = ("service", "operation", "error", "latency_ms", "probability")
# Seconds around a fault whose acknowledged messages are counted as "around it".
AROUND_S = 5.0
# Throughput has recovered once a second stores at least this share of the rate before the fault.
RECOVERED_SHARE = 0.8
# Why a fault can lose data no part of this project can keep: the report says so beside the count.
KNOWN_LOSS = {
    ("emulator", "kill"): (
        "ministack keeps its state in memory and saves it only on a graceful stop or a snapshot "
        "(`make up` takes one): a SIGKILL loses every item, queue message and object written since"
    ),
}


class FaultSpec(BaseModel):
    """One scheduled fault, as written in a scenario file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: float = Field(ge=0, description="seconds after the load starts")
    target: Target
    action: Action
    down_s: float = Field(default=5.0, ge=0, le=600)
    # target `api` only: which calls, and what they get (as a rule of LocalStack's Chaos API)
    service: str | None = None
    operation: str | None = None
    error: ApiError | None = None
    latency_ms: int | None = Field(default=None, gt=0, le=MAX_LATENCY_MS)
    probability: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _action_fits_target(self) -> FaultSpec:
        if self.action not in ACTIONS[self.target]:
            raise ValueError(f"a {self.target} can suffer {', '.join(ACTIONS[self.target])}, not {self.action}")
        given = [name for name in API_FIELDS if getattr(self, name) is not None]
        if self.target != "api":
            if given:
                raise ValueError(f"{', '.join(given)}: only for an `api` fault")
            return self
        if self.service is None:
            raise ValueError("an `api` fault names the service whose calls it hits (dynamodb, firehose, sns, ...)")
        if (self.action == "delay") != (self.latency_ms is not None):
            raise ValueError("`latency_ms` goes with action delay, and delay needs it")
        if self.action == "delay" and self.error is not None:
            raise ValueError("a delay passes the calls on: it takes no `error`")
        try:
            self.rule()
        except ValidationError as exc:
            raise ValueError("; ".join(str(e["msg"]) for e in exc.errors())) from None
        return self

    def rule(self) -> FaultRule:
        """The Chaos API rule that injects this fault (an `api` fault's)."""
        if self.action == "delay":
            return FaultRule(
                service=self.service, operation=self.operation, probability=self.probability, latency=self.latency_ms
            )
        return FaultRule(
            service=self.service,
            operation=self.operation,
            probability=self.probability,
            error=self.error or ApiError(),
        )

    @property
    def label(self) -> str:
        if self.target != "api":
            return f"{self.target} {self.action}"
        what = f"{self.latency_ms} ms" if self.action == "delay" else (self.error or ApiError()).code
        share = f" {self.probability:.0%}" if self.probability is not None else ""
        return f"api {self.service}.{self.operation or '*'} {self.action} {what}{share}"


class FaultError(TestbedError):
    """The backend cannot inject this fault (only the embedded backend runs the parts as processes)."""


@dataclass
class InjectedFault:
    """When a fault began and when the part was back (epoch seconds), or why it could not be injected."""

    spec: FaultSpec
    started: float = 0.0
    recovered: float = 0.0
    error: str | None = None
    # an API fault's rule tally from the fault proxy: calls matched, failed, delayed, retried, reached_caller
    calls: dict[str, int] | None = None


@dataclass
class FaultSchedule:
    """Runs the faults in a thread, each at its time after `start`, one after another.

    Not a daemon: a run that is interrupted (Ctrl-C, an error) cancels what has not started and
    waits for the fault in progress to bring its part back (a paused broker gets its SIGCONT).
    """

    specs: list[FaultSpec]
    # injects one fault and returns when it is over: an API fault's call tally, or None
    inject: Callable[[FaultSpec], dict[str, int] | None]
    done: list[InjectedFault] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def start(self, at: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(at,), name="faults")
        self._thread.start()

    def cancel(self) -> None:
        """No further fault starts; the one in progress still ends as scheduled."""
        self._cancelled.set()
        self.join()

    def _run(self, at: float) -> None:
        for spec in sorted(self.specs, key=lambda s: s.at_s):
            if self._cancelled.wait(max(0.0, at + spec.at_s - time.time())):
                return
            fault = InjectedFault(spec, started=time.time())
            logger.info("injecting %s for %g s", spec.label, spec.down_s)
            try:
                fault.calls = self.inject(spec)
            except Exception as exc:  # the report says which fault failed and why; the run goes on
                logger.exception("could not inject %s", spec.label)
                fault.error = f"{type(exc).__name__}: {exc}"
            # an API fault is over when its rule is lifted (its call tally is read a few seconds later)
            fault.recovered = fault.started + spec.down_s if fault.calls is not None else time.time()
            self.done.append(fault)

    def join(self) -> list[InjectedFault]:
        if self._thread is not None:
            self._thread.join()
        return self.done


def throttle_processor(lambda_client: Any, function_name: str, down_s: float) -> None:
    """No invocation of the processor succeeds for `down_s` (reserved concurrency 0), then back."""
    lambda_client.put_function_concurrency(FunctionName=function_name, ReservedConcurrentExecutions=0)
    try:
        time.sleep(down_s)
    finally:
        lambda_client.delete_function_concurrency(FunctionName=function_name)


def fault_accounting(
    fault: InjectedFault,
    acked_at: dict[tuple[str, int], float],
    lost: set[tuple[str, int]],
    deliveries: dict[tuple[str, int], int],
    stored_per_s: dict[int, int],
    dead_lettered: frozenset[tuple[str, int]] = frozenset(),
) -> dict[str, Any]:
    """What one fault cost: messages acknowledged around it, how many of those were lost,
    dead-lettered or delivered more than once, and the seconds until the stored rate was back.

    `acked_at`: when each acknowledged message was due; `deliveries`: how many times the
    pipeline received each message; `stored_per_s`: items stored in each epoch second.
    """
    window = (fault.started - AROUND_S, fault.recovered + AROUND_S)
    around = {m for m, at in acked_at.items() if window[0] <= at <= window[1]}
    before = [stored_per_s.get(s, 0) for s in range(int(fault.started) - 10, int(fault.started))]
    baseline = sorted(before)[len(before) // 2] if before else 0
    recovery: float | None = None
    last = max(stored_per_s, default=int(fault.started))
    for second in range(int(fault.started), last + 1):
        if stored_per_s.get(second, 0) >= RECOVERED_SHARE * baseline and second >= int(fault.recovered):
            recovery = round(second - fault.started, 1)
            break
    return {
        "fault": fault.spec.label,
        "at_s": fault.spec.at_s,
        "down_s": fault.spec.down_s,
        "started": round(fault.started, 3),
        "back_after_s": round(fault.recovered - fault.started, 1),
        "error": fault.error,
        "acked_around": len(around),
        "lost": len(around & lost),
        "dead_lettered": len(around & dead_lettered),
        "duplicated": sum(1 for m in around if deliveries.get(m, 0) > 1),
        "recovered_after_s": recovery,
        "known_loss": KNOWN_LOSS.get((fault.spec.target, fault.spec.action)),
        "calls": fault.calls,
    }


def calls_text(calls: dict[str, int] | None) -> str:
    """What an API fault did to the calls it matched, as the report's fault table shows it."""
    if calls is None:
        return ""
    shown = [f"{calls['matched']:,} matched", f"{calls['failed']:,} failed", f"{calls['retried']:,} retried"]
    shown += [f"{calls['reached_caller']:,} not retried (the caller got the error)"] if calls["reached_caller"] else []
    shown += [f"{calls['delayed']:,} delayed"] if calls["delayed"] else []
    return ", ".join(shown)


def archived_deliveries(stores: Stores, device_ids: set[str], since: float) -> Counter[tuple[str, int]]:
    """How many times each message was archived: once per delivery the processor accepted."""
    counts: Counter[tuple[str, int]] = Counter()
    for line in stores.archived_messages(since):
        key = archived_key(line)
        if key is not None and key[0] in device_ids:
            counts[key] += 1
    return counts


def fault_tallies(
    injected: list[InjectedFault],
    summary: RunSummary,
    lost: list[tuple[str, int]],
    deliveries: Counter[tuple[str, int]],
    stored_at: np.ndarray,
    dead_lettered: frozenset[tuple[str, int]] = frozenset(),
) -> list[dict[str, Any]]:
    """Each injected fault's tally: what it cost, what came back, what was lost in its window."""
    acked_at = {
        (device_id, msg_id): due
        for device_id, record in summary["per_device"].items()
        for msg_id, due in zip(record["acked"], record["acked_due"], strict=True)
    }
    stored_per_s = Counter(int(s) for s in stored_at)
    return [fault_accounting(f, acked_at, set(lost), deliveries, stored_per_s, dead_lettered) for f in injected]
