"""Lambda: its runtime, reserved environment keys, payload limit, the SQS event source's batches and
concurrency, and the metrics behind the alarms."""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from testbed.parity.probes.common import NONE_HERE, refusal
from testbed.parity.throwaway import (
    LAMBDA_RUNTIME,
    LAMBDA_RUNTIME_PYTHON,
    Throwaway,
    probe_function,
    probe_role,
    wait_until,
)
from testbed.parity.types import ProbeContext, Row, Verdict

LAMBDA_MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
# The least MaximumConcurrency AWS accepts: the probe can only see a cap it can exceed.
ESM_CONCURRENCY = 2
ESM_SLEEP_S = 0.3
ESM_WAIT_S = 30.0


@dataclass(frozen=True)
class LambdaSeen:
    # the Python the probe function ran on (platform.python_version()), "" when it did not say
    python: str
    # the error a function with AWS_REGION in its environment was refused with; None: accepted
    reserved_env_error: str | None
    # the processor's own environment keys that AWS reserves
    processor_reserved_keys: tuple[str, ...]
    oversize_invoke_error: str | None
    throttle_error: str | None
    # the stack's event source mapping, and what the probe's copy of it delivered
    batch_size: int
    batching_window_s: int
    batches: tuple[int, ...]
    sent: int
    max_overlap: int
    # the namespaces that the stack's alarms watch, and which of them the backend published for the probe
    alarm_namespaces: dict[str, tuple[str, ...]]
    published: tuple[str, ...]


# https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
LAMBDA_RESERVED_ENV_KEYS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "TZ",
    }
)


def _batches(logs: Any, group: str) -> list[tuple[int, float, float]]:
    found = []
    with suppress(ClientError):  # no log group yet: nothing ran
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
            for event in page.get("events", []):
                text = event.get("message", "")
                if "parity_batch" in text:
                    line = json.loads(text[text.index("{") :])
                    found.append((int(line["parity_batch"]), float(line["start"]), float(line["end"])))
    return found


def max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    running = best = 0
    for _, step in edges:
        running += step
        best = max(best, running)
    return best


def _alarm_namespaces(ctx: ProbeContext) -> dict[str, tuple[str, ...]]:
    """The stack's alarms (those whose dimensions name its function or queues), by metric namespace."""
    ours = {ctx.outputs.processor_function_name} | {
        url.rstrip("/").rsplit("/", 1)[-1] for url in (ctx.outputs.ingest_queue_url, ctx.outputs.dlq_url)
    }
    by_namespace: dict[str, list[str]] = {}
    for page in ctx.client("cloudwatch").get_paginator("describe_alarms").paginate():
        for alarm in page.get("MetricAlarms", []):
            if any(d.get("Value") in ours for d in alarm.get("Dimensions", [])):
                by_namespace.setdefault(alarm["Namespace"], []).append(alarm["AlarmName"])
    return {ns: tuple(sorted(names)) for ns, names in sorted(by_namespace.items())}


def observe_lambda(ctx: ProbeContext) -> LambdaSeen:
    """One probe function fed by a probe queue through a copy of the stack's event source mapping."""
    lam, sqs, logs, cloudwatch = (ctx.client(s) for s in ("lambda", "sqs", "logs", "cloudwatch"))
    processor_env = (
        lam.get_function_configuration(FunctionName=ctx.outputs.processor_function_name)
        .get("Environment", {})
        .get("Variables", {})
    )
    mappings = lam.list_event_source_mappings(FunctionName=ctx.outputs.processor_function_name)["EventSourceMappings"]
    batch_size = int(mappings[0].get("BatchSize", 10)) if mappings else 10
    window_s = int(mappings[0].get("MaximumBatchingWindowInSeconds", 0)) if mappings else 0
    sent = min(max(3 * batch_size, 30), 300)
    actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "logs:*"]
    with Throwaway() as made:
        role = probe_role(made, ctx.client("iam"), ctx.name, "lambda.amazonaws.com", actions)
        reserved_error = refusal(
            lambda: probe_function(made, lam, logs, f"{ctx.name}-env", role, {"AWS_REGION": "eu-west-1"}),
            "InvalidParameterValueException",
        )
        probe_function(made, lam, logs, ctx.name, role)
        queue_url = sqs.create_queue(QueueName=ctx.name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        made.delete(f"queue {ctx.name}", lambda: sqs.delete_queue(QueueUrl=queue_url))
        answer = json.loads(lam.invoke(FunctionName=ctx.name, Payload=b"{}")["Payload"].read() or b"{}")
        oversize = json.dumps({"pad": "x" * LAMBDA_MAX_SYNC_PAYLOAD_BYTES}).encode()
        oversize_error = refusal(
            lambda: lam.invoke(FunctionName=ctx.name, Payload=oversize), "RequestEntityTooLargeException"
        )
        for first in range(0, sent, 10):
            entries = [{"Id": str(n), "MessageBody": str(ESM_SLEEP_S)} for n in range(first, min(first + 10, sent))]
            sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        mapping_id = lam.create_event_source_mapping(
            FunctionName=ctx.name,
            EventSourceArn=queue_arn,
            BatchSize=batch_size,
            MaximumBatchingWindowInSeconds=window_s,
            ScalingConfig={"MaximumConcurrency": ESM_CONCURRENCY},
        )["UUID"]
        made.delete(f"mapping {mapping_id}", lambda: lam.delete_event_source_mapping(UUID=mapping_id))
        group = f"/aws/lambda/{ctx.name}"
        wait_until(lambda: sum(b for b, _, _ in _batches(logs, group)) >= sent, ESM_WAIT_S, every_s=1.0)
        runs = [run for run in _batches(logs, group) if run[0] > 0]
        published = []
        for namespace, dimension in (("AWS/Lambda", "FunctionName"), ("AWS/SQS", "QueueName")):
            metrics = cloudwatch.list_metrics(Namespace=namespace, Dimensions=[{"Name": dimension, "Value": ctx.name}])
            if metrics.get("Metrics"):
                published.append(namespace)
        lam.put_function_concurrency(FunctionName=ctx.name, ReservedConcurrentExecutions=0)
        throttle_error = refusal(lambda: lam.invoke(FunctionName=ctx.name, Payload=b"{}"), "TooManyRequestsException")
    return LambdaSeen(
        python=str(answer.get("python", "")) if isinstance(answer, dict) else "",
        reserved_env_error=reserved_error,
        processor_reserved_keys=tuple(sorted(k for k in processor_env if k in LAMBDA_RESERVED_ENV_KEYS)),
        oversize_invoke_error=oversize_error,
        throttle_error=throttle_error,
        batch_size=batch_size,
        batching_window_s=window_s,
        batches=tuple(b for b, _, _ in runs),
        sent=sent,
        max_overlap=max_overlap([(start, end) for _, start, end in runs]),
        alarm_namespaces=_alarm_namespaces(ctx),
        published=tuple(published),
    )


def judge_lambda(seen: LambdaSeen) -> list[Row]:
    rows = [_judge_runtime(seen)]
    aws = "refuses a function whose environment sets a reserved key (AWS_REGION, ...)"
    if seen.reserved_env_error is not None:
        refused = f"refused ({seen.reserved_env_error})"
        rows.append(Row("Reserved Lambda env keys", aws, refused, Verdict.SAME, NONE_HERE))
    else:
        yours = ", ".join(seen.processor_reserved_keys) or "none"
        rows.append(
            Row(
                "Reserved Lambda env keys",
                aws,
                "accepted a function with AWS_REGION set",
                Verdict.DIFFERS,
                f"a function that sets one deploys here and fails to deploy on AWS (your processor sets: {yours})",
            )
        )
    aws = "answers TooManyRequestsException to a function with reserved concurrency 0"
    if seen.throttle_error == "TooManyRequestsException":
        rows.append(Row("Lambda throttling", aws, "throttled (TooManyRequestsException)", Verdict.SAME, NONE_HERE))
    else:
        rows.append(
            Row(
                "Lambda throttling",
                aws,
                f"refused with {seen.throttle_error}" if seen.throttle_error else "ran the invocation",
                Verdict.DIFFERS,
                "throttling and the callers' retries on it are not exercised here",
            )
        )
    aws = f"refuses a synchronous invoke over {LAMBDA_MAX_SYNC_PAYLOAD_BYTES:,} bytes"
    if seen.oversize_invoke_error is not None:
        rows.append(
            Row("Lambda payload limit", aws, f"refused ({seen.oversize_invoke_error})", Verdict.SAME, NONE_HERE)
        )
    else:
        rows.append(
            Row(
                "Lambda payload limit",
                aws,
                "ran an invocation over the limit",
                Verdict.DIFFERS,
                "a batch too large for AWS goes through here: size batches by bytes, not by count alone",
            )
        )
    rows.append(_judge_batches(seen))
    rows.append(_judge_concurrency(seen))
    rows.append(_judge_metrics(seen))
    return rows


def _judge_runtime(seen: LambdaSeen) -> Row:
    aws = f"runs a {LAMBDA_RUNTIME} function on Python {LAMBDA_RUNTIME_PYTHON}"
    if not seen.python:
        return Row("Lambda runtime", aws, "the probe function returned no version", Verdict.UNKNOWN, "")
    here = f"ran it on Python {seen.python}"
    if seen.python.startswith(f"{LAMBDA_RUNTIME_PYTHON}."):
        return Row("Lambda runtime", aws, here, Verdict.SAME, NONE_HERE)
    return Row(
        "Lambda runtime",
        aws,
        here,
        Verdict.DIFFERS,
        f"code that runs here may not on AWS's Python {LAMBDA_RUNTIME_PYTHON} (syntax, removed modules): "
        f"install Python {LAMBDA_RUNTIME_PYTHON} (pyenv) and rebuild the emulator's venv",
    )


def _judge_batches(seen: LambdaSeen) -> Row:
    aws = f"batches of up to {seen.batch_size} (your mapping), gathered for up to {seen.batching_window_s} s"
    if not seen.batches:
        return Row("SQS event source batches", aws, f"no batch ran within {ESM_WAIT_S:g} s", Verdict.UNKNOWN, "")
    largest = max(seen.batches)
    found = f"{len(seen.batches)} batches for {seen.sent} messages, largest {largest}"
    expected = min(seen.batch_size, seen.sent)
    if largest >= expected or (seen.batching_window_s == 0 and largest > 1):
        return Row("SQS event source batches", aws, found, Verdict.SAME, NONE_HERE)
    return Row(
        "SQS event source batches",
        aws,
        found,
        Verdict.DIFFERS,
        f"the sqs and iot ingress modes invoke the processor about {expected / largest:.0f}x as often as AWS "
        "would: their rate here is lower, per-invocation costs higher (direct mode does not use the mapping)",
    )


def _judge_concurrency(seen: LambdaSeen) -> Row:
    aws = f"at most {ESM_CONCURRENCY} batches at once (ScalingConfig.MaximumConcurrency {ESM_CONCURRENCY})"
    if len(seen.batches) < 2:
        return Row("SQS event source concurrency", aws, "too few batches to see", Verdict.UNKNOWN, "")
    found = f"at most {seen.max_overlap} at once"
    if seen.max_overlap <= ESM_CONCURRENCY:
        return Row("SQS event source concurrency", aws, found, Verdict.SAME, NONE_HERE)
    return Row(
        "SQS event source concurrency",
        aws,
        found,
        Verdict.DIFFERS,
        "the processor runs wider here than your cap allows on AWS: downstream load is higher",
    )


def _judge_metrics(seen: LambdaSeen) -> Row:
    watched = sorted(seen.alarm_namespaces)
    aws = "publishes AWS/Lambda and AWS/SQS metrics for every function and queue"
    if not watched:
        none = "the stack has no alarm on its function or queues"
        return Row("Metrics behind your alarms", aws, none, Verdict.UNKNOWN, "")
    missing = [ns for ns in watched if ns not in seen.published]
    found = f"publishes {', '.join(seen.published) or 'none of them'}"
    if not missing:
        return Row("Metrics behind your alarms", aws, found, Verdict.SAME, NONE_HERE)
    blind = ", ".join(name for ns in missing for name in seen.alarm_namespaces[ns])
    return Row(
        "Metrics behind your alarms",
        aws,
        f"{found}; not {', '.join(missing)}",
        Verdict.DIFFERS,
        f"these alarms never fire on their own here: {blind}; read what they watch (make inspect) instead",
    )
