"""The emulator's own ceiling for what one message costs it, measured in the benchmark's run.

The same commit runs 3-4x slower on some machines than on others, so an end-to-end rate means
little alone. Next to it the benchmark measures, on the same stack and minutes, the two things
every message costs the emulator whatever our code does: its share of a BatchWriteItem at the
processor's item shape, and its share of a synchronous invoke at the bridge's batch shape (a
function that does nothing). The pipeline's rate is reported as a ratio of their combined ceiling.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psutil

from processor.store import to_item
from processor.validation import parse
from testbed.bench.fakes import sqs_event
from testbed.bench.processor_rate import bodies
from testbed.exceptions import TestbedError
from testbed.lifecycle.stack import Stack
from testbed.parity.throwaway import Throwaway, probe_function, probe_role

# DynamoDB's BatchWriteItem takes at most 25 items: the processor writes in chunks of this size.
ITEMS_PER_CALL = 25
WRITE_THREADS = 4
# The invoke probe's batch and threads: the bridge's direct-mode defaults when the method was set.
# They stay fixed when the bridge's change (it now sends up to 500 from 2 slots), so that ceilings
# measured by different commits stay one yardstick.
INVOKE_BATCH = 100
INVOKE_THREADS = 4
CEILING_S = 8.0
# A fresh embedded stack's emulator holds ~100 MB; every stored message adds ~4 KB it never gives back,
# and a grown emulator is slower at everything: on one machine in one session, its ceiling was 3,345
# msg/s fresh, 3,031 at 7.3 GB after two benches and 2,549 at 5.3 GB after load runs of another kind.
GROWN_EMULATOR_MB = 1024.0


def grown_emulator(rss_mb: float | None) -> str | None:
    """Why this run's figures will not compare with a run on a fresh emulator, or None."""
    if rss_mb is None or rss_mb <= GROWN_EMULATOR_MB:
        return None
    return (
        f"the emulator holds {rss_mb:,.0f} MB from earlier runs (a fresh one ~100 MB): a grown emulator is "
        "slower, its ceiling and every step with it, so these figures compare only with runs as grown; "
        "for figures that compare, `make clean && make up` first"
    )


@dataclass(frozen=True)
class Ceiling:
    dynamodb_items_s: float
    invoke_msg_s: float

    @property
    def per_message_us(self) -> float:
        """Emulator time per message: one item written plus its share of one invoke."""
        return 1e6 / max(self.dynamodb_items_s, 1e-9) + 1e6 / max(self.invoke_msg_s, 1e-9)

    @property
    def msg_s(self) -> float:
        return 1e6 / self.per_message_us

    def as_dict(self) -> dict[str, float]:
        return {
            "dynamodb_items_s": round(self.dynamodb_items_s),
            "invoke_msg_s": round(self.invoke_msg_s),
            "combined_msg_s": round(self.msg_s),
            "emulator_us_per_msg": round(self.per_message_us, 1),
        }


def _for(seconds: float, threads: int, work: Callable[[], int]) -> float:
    """Run `work` (returns units done) in `threads` threads for `seconds`; units per second."""
    stop = time.monotonic() + seconds
    counts = [0] * threads
    lock = threading.Lock()

    def loop(index: int) -> None:
        while time.monotonic() < stop:
            done = work()
            with lock:
                counts[index] += done

    started = time.monotonic()
    with ThreadPoolExecutor(threads, thread_name_prefix="ceiling") as pool:
        list(pool.map(loop, range(threads)))
    return sum(counts) / (time.monotonic() - started)


def items(count: int, key: bytes) -> list[dict[str, Any]]:
    """Items exactly as the processor writes them, from signed simulator-shaped messages."""
    now_ms = int(time.time() * 1000)
    return [
        to_item(
            parse(body, arrival_ms=now_ms, max_skew_ms=10**9),
            stored_at_ms=now_ms,
            expires_at_s=now_ms // 1000 + 3600,
            arrived_at_ms=now_ms,
            invoked_at_ms=now_ms,
        )
        for body in bodies(count, key)
    ]


def dynamodb_ceiling(stack: Stack, seconds: float = CEILING_S) -> float:
    """Items/s that BatchWriteItem takes in chunks of 25, from WRITE_THREADS threads, into a throwaway
    table with the telemetry table's keys."""
    dynamodb = stack.client("dynamodb")
    table = dynamodb.describe_table(TableName=stack.outputs().need("telemetry_table_name"))["Table"]
    keys = {k["AttributeName"] for k in table["KeySchema"]}
    name = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=name,
        KeySchema=table["KeySchema"],
        AttributeDefinitions=[a for a in table["AttributeDefinitions"] if a["AttributeName"] in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        pool = items(2_000, stack.signing_key())
        chunks = [pool[i : i + ITEMS_PER_CALL] for i in range(0, len(pool), ITEMS_PER_CALL)]
        clients = threading.local()
        turn = itertools.count()

        def write() -> int:
            if not hasattr(clients, "dynamodb"):
                clients.dynamodb = stack.client("dynamodb")
            chunk = chunks[next(turn) % len(chunks)]
            requests = [{"PutRequest": {"Item": item}} for item in chunk]
            answer = clients.dynamodb.batch_write_item(RequestItems={name: requests})
            return len(chunk) - len(answer.get("UnprocessedItems", {}).get(name, []))

        return _for(seconds, WRITE_THREADS, write)
    finally:
        dynamodb.delete_table(TableName=name)


def invoke_ceiling(stack: Stack, seconds: float = CEILING_S) -> float:
    """Messages/s through synchronous invokes of a function that does nothing, at the bridge's batch
    size and concurrency: the emulator's Lambda path alone."""
    name = f"bench-invoke-{uuid.uuid4().hex[:8]}"
    lam = stack.client("lambda")
    encoded = json.dumps(sqs_event(bodies(INVOKE_BATCH, b"ceiling"))).encode()
    with Throwaway() as made:
        role = probe_role(made, stack.client("iam"), name, "lambda.amazonaws.com", ["logs:*"])
        probe_function(made, lam, stack.client("logs"), name, role)
        lam.invoke(FunctionName=name, Payload=encoded)
        clients = threading.local()

        def invoke() -> int:
            if not hasattr(clients, "lam"):
                clients.lam = stack.client("lambda")
            clients.lam.invoke(FunctionName=name, Payload=encoded)["Payload"].read()
            return INVOKE_BATCH

        return _for(seconds, INVOKE_THREADS, invoke)


def measure(stack: Stack, seconds: float = CEILING_S) -> Ceiling:
    ceiling = Ceiling(dynamodb_ceiling(stack, seconds), invoke_ceiling(stack, seconds))
    if not (ceiling.dynamodb_items_s > 0 and ceiling.invoke_msg_s > 0):
        raise TestbedError(f"the emulator took nothing in {seconds:g} s ({ceiling.as_dict()}): is it overloaded?")
    return ceiling


class CpuMeter:
    """CPU seconds of each process of the stack, so a step's cost per message can be split by process.

    The emulator's children are its Lambda workers, counted apart from the emulator itself. Each child
    is known by its pid and start time (a pid can be reused) and keeps the CPU it had when last seen,
    so a worker the emulator retires between two samples still counts up to the first of them."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.children: dict[tuple[int, float], float] = {}

    @staticmethod
    def _seconds(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    def workers(self) -> frozenset[tuple[int, float]]:
        """The Lambda workers seen at a sample so far, by pid and start time."""
        return frozenset(self.children)

    def started_after(self, known: frozenset[tuple[int, float]]) -> int:
        """Workers seen since `known` was taken: each is a cold start, whose first invocations make a
        step's latency tail. (A worker that starts and ends between two samples is not seen.)"""
        return len(self.children.keys() - known)

    def sample(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for name, process in self.processes.items():
            try:
                found[name] = self._seconds(process)
                if name == "emulator":
                    for child in process.children(recursive=True):
                        try:
                            self.children[(child.pid, child.create_time())] = self._seconds(child)
                        except psutil.Error:  # it ended between the listing and the read
                            continue
                    found["lambda workers"] = sum(self.children.values())
            except psutil.Error:  # the process ended: its row is left out, not counted as zero
                continue
        return found


def stack_pids(stack: Stack) -> dict[str, int]:
    """The stack's processes by role: emulator, broker, bridge (each running one counted once)."""
    pids: dict[str, int] = {}
    for component in stack.backend.components():
        if component.pid is not None and component.pid not in pids.values():
            pids[component.name] = component.pid
    return pids
