"""Processor benchmark: records/s through the handler in-process and through the deployed function.

In-process, every AWS client the workload calls is an in-memory double (testbed/bench/fakes.py), so the
figure is the handler's own cost on one core. Deployed, the function is invoked synchronously on
the emulator with SQS-shaped batches, so the figure includes the emulator's Lambda worker,
DynamoDB, Firehose and S3.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

from processor import handler
from processor.config import Settings
from processor.pipeline import Clients, Pipeline
from telemetry import new_message
from testbed.bench.fakes import (
    SIGNING_KEY,
    FakeDynamoDB,
    FakeFirehose,
    FakeLambdaContext,
    FakeSecrets,
    UnusedBucket,
    UnusedTopic,
    fake_settings,
    sqs_event,
)
from testbed.lifecycle.stack import Stack

BATCH_SIZES = (10, 100, 1000)
IN_PROCESS_RECORDS = 30_000
DEPLOYED_RECORDS = 3_000
READINGS: dict[str, tuple[float | bool, str]] = {
    "temperature": (21.5, "C"),
    "humidity": (40.25, "%"),
    "pressure": (1013.2, "hPa"),
    "co2": (612.0, "ppm"),
}


def bodies(count: int, key: bytes, devices: int = 200) -> list[str]:
    run = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    return [
        json.dumps(
            new_message(
                device_id=f"bench-{run}-{i % devices}",
                msg_id=i,
                ts=now,
                device_type="environmental",
                firmware="1.0.0",
                readings=READINGS,
                key=key,
            )
        )
        for i in range(count)
    ]


def sqs_events(records: list[str], batch_size: int) -> Iterable[dict[str, Any]]:
    for start in range(0, len(records), batch_size):
        yield sqs_event(records[start : start + batch_size], first=start)


def in_process(batch_size: int, settings: Settings) -> float:
    """Records/s through lambda_handler with in-memory clients (logs go to /dev/null)."""
    records = bodies(IN_PROCESS_RECORDS, SIGNING_KEY)
    events = list(sqs_events(records, batch_size))
    # Every message is valid, with readings that never vary, and `fake_settings()` sets no threshold:
    # nothing is quarantined (no S3) and nothing alerts (no SNS, no conditional writes in DynamoDB).
    clients = Clients(FakeDynamoDB(), FakeFirehose(), UnusedBucket(), UnusedTopic(), FakeSecrets())
    handler._pipeline = Pipeline(settings, clients, sleep=lambda _: None)
    # A Lambda holds one event at a time; keep the prepared 30k records out of the GC's scans.
    gc.collect()
    gc.freeze()
    streams = [h for h in handler.logger.handlers if isinstance(h, logging.StreamHandler)]
    # The handler still formats and writes its logs and EMF metrics, to /dev/null.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        previous = [stream.setStream(devnull) for stream in streams]
        std_logger = logging.getLogger(handler.SERVICE)
        propagate, std_logger.propagate = std_logger.propagate, False
        try:
            start = time.perf_counter()
            for event in events:
                response = handler.lambda_handler(event, FakeLambdaContext())
                assert not response["batchItemFailures"], "the benchmark's records must all be accepted"
            elapsed = time.perf_counter() - start
        finally:
            handler._pipeline = None
            gc.unfreeze()
            std_logger.propagate = propagate
            for stream, old in zip(streams, previous, strict=True):
                stream.setStream(old)
    return len(records) / elapsed


def deployed(stack: Stack, batch_size: int) -> float:
    """Records/s through the deployed function, invoked synchronously one batch at a time."""
    outputs = stack.outputs()
    records = bodies(DEPLOYED_RECORDS, stack.signing_key())
    lam = stack.client("lambda")
    events = list(sqs_events(records, batch_size))
    lam.invoke(FunctionName=outputs.processor_function_name, Payload=json.dumps({"Records": []}).encode())
    start = time.perf_counter()
    for event in events:
        response = lam.invoke(FunctionName=outputs.processor_function_name, Payload=json.dumps(event).encode())
        result = json.loads(response["Payload"].read())
        if response.get("FunctionError") or result.get("batchItemFailures"):
            raise RuntimeError(f"the deployed processor failed records: {result}")
    return len(records) / (time.perf_counter() - start)


def run(stack: Stack | None) -> list[dict[str, Any]]:
    """One row per batch size: in-process and (when a stack is given) deployed records/s."""
    rows = []
    for size in BATCH_SIZES:
        row: dict[str, Any] = {"batch_size": size, "in_process_rec_s": round(in_process(size, fake_settings()))}
        if stack is not None:
            row["deployed_rec_s"] = round(deployed(stack, size))
        rows.append(row)
    return rows
