"""The probes: each creates throwaway resources named after the probe, exercises one AWS behaviour
the pipeline relies on, deletes what it made, and returns what it saw. Judging what was seen is a
separate pure function per probe, so a changed behaviour is seen to change its row (unit tests).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from botocore.exceptions import ClientError
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ingress.broker import IOT_MAX_PAYLOAD_BYTES
from ingress.rule import Message, RuleError, RuleEvaluationError, parse_rule
from telemetry.topics import BASIC_INGEST_PREFIX
from testbed.parity.throwaway import (
    LAMBDA_RUNTIME,
    LAMBDA_RUNTIME_PYTHON,
    RESOURCE_WAIT_S,
    Throwaway,
    probe_function,
    probe_role,
    wait_until,
)
from testbed.parity.types import ProbeContext, Row, Verdict

logger = logging.getLogger(__name__)

# AWS's documented limits, each probed one byte over.
SQS_MAX_MESSAGE_BYTES = 1024 * 1024  # raised from 256 KiB in August 2025
DYNAMODB_MAX_ITEM_BYTES = 400 * 1024
LAMBDA_MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
FIREHOSE_RECORDS = 3
FIREHOSE_WAIT_S = 3.0
ALARM_WAIT_S = 2.0
ALARM_PERIODS = 3
# The least MaximumConcurrency AWS accepts: the probe can only see a cap it can exceed.
ESM_CONCURRENCY = 2
ESM_SLEEP_S = 0.3
ESM_WAIT_S = 30.0
MQTT_WAIT_S = 5.0
NOT_AUTHORIZED = "Not authorized"
RULE_WAIT_S = 5.0
GZIP_MAGIC = b"\x1f\x8b"
NONE_HERE = "none: what you test here behaves as on AWS"


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def _bucket_args(region: str) -> dict[str, Any]:
    return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}


# ---- Firehose ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirehoseSeen:
    records: int
    # objects in the bucket FIREHOSE_WAIT_S after the records went in
    objects: int
    # the first object starts with GZIP's magic bytes; None when no object was written
    gzip: bool | None
    size_mb: int
    interval_s: int
    compression: str


def observe_firehose(ctx: ProbeContext) -> FirehoseSeen:
    """A stream with the stack's stream's buffering and compression, into a bucket of its own."""
    firehose, s3 = ctx.client("firehose"), ctx.client("s3")
    described = firehose.describe_delivery_stream(DeliveryStreamName=ctx.outputs.need("archive_stream_name"))
    destination = described["DeliveryStreamDescription"]["Destinations"][0]
    s3_config = destination.get("ExtendedS3DestinationDescription") or destination["S3DestinationDescription"]
    hints = s3_config.get("BufferingHints") or {"SizeInMBs": 5, "IntervalInSeconds": 300}
    compression = str(s3_config.get("CompressionFormat", "UNCOMPRESSED"))
    with Throwaway() as made:
        s3.create_bucket(Bucket=ctx.name, **_bucket_args(ctx.outputs.region))
        made.delete(f"bucket {ctx.name}", lambda: s3.delete_bucket(Bucket=ctx.name))
        made.delete(f"objects of {ctx.name}", lambda: _empty(s3, ctx.name))
        role = probe_role(made, ctx.client("iam"), ctx.name, "firehose.amazonaws.com", ["s3:*"])
        firehose.create_delivery_stream(
            DeliveryStreamName=ctx.name,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "BucketARN": f"arn:aws:s3:::{ctx.name}",
                "RoleARN": role,
                "BufferingHints": hints,
                "CompressionFormat": compression,
            },
        )
        made.delete(f"stream {ctx.name}", lambda: firehose.delete_delivery_stream(DeliveryStreamName=ctx.name))
        if not wait_until(
            lambda: (
                firehose.describe_delivery_stream(DeliveryStreamName=ctx.name)["DeliveryStreamDescription"][
                    "DeliveryStreamStatus"
                ]
                == "ACTIVE"
            ),
            RESOURCE_WAIT_S,
        ):
            raise TimeoutError(f"the probe's delivery stream was not active within {RESOURCE_WAIT_S:g} s")
        answer = firehose.put_record_batch(
            DeliveryStreamName=ctx.name,
            Records=[{"Data": json.dumps({"parity": n}).encode() + b"\n"} for n in range(FIREHOSE_RECORDS)],
        )
        if answer.get("FailedPutCount"):
            raise RuntimeError(f"the probe's records were refused: {answer.get('RequestResponses')}")
        time.sleep(FIREHOSE_WAIT_S)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=ctx.name).get("Contents", [])]
        gzip = s3.get_object(Bucket=ctx.name, Key=keys[0])["Body"].read()[:2] == GZIP_MAGIC if keys else None
    return FirehoseSeen(
        FIREHOSE_RECORDS, len(keys), gzip, int(hints["SizeInMBs"]), int(hints["IntervalInSeconds"]), compression
    )


def _empty(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])


def judge_firehose(seen: FirehoseSeen) -> list[Row]:
    aws = f"buffers up to {seen.size_mb} MB or {seen.interval_s} s, then writes one object for all records"
    waited = f"{FIREHOSE_WAIT_S:g} s"
    if seen.objects == 0:
        buffering = Row(
            "Firehose buffering", aws, f"no object {waited} after {seen.records} records", Verdict.SAME, NONE_HERE
        )
    else:
        buffering = Row(
            "Firehose buffering",
            aws,
            f"{seen.objects} object(s) for {seen.records} records within {waited}",
            Verdict.DIFFERS,
            "the archive fills at once, one object per record: its object count, its delay and S3 PUTs are "
            "not AWS's (the cost section prices AWS's buffering, not what happened here)",
        )
    wants_gzip = seen.compression == "GZIP"
    aws_gzip = "compresses each object (GZIP)" if wants_gzip else f"writes objects as set ({seen.compression})"
    if seen.gzip is None:
        return [buffering, Row("Firehose GZIP", aws_gzip, f"no object within {waited} to look at", Verdict.UNKNOWN, "")]
    found = "GZIP objects" if seen.gzip else "uncompressed objects"
    if seen.gzip == wants_gzip:
        return [buffering, Row("Firehose GZIP", aws_gzip, found, Verdict.SAME, NONE_HERE)]
    consequence = (
        "whatever reads the archive reads plain JSON here and GZIP on AWS: a reader that works here can fail there"
        if wants_gzip
        else "the archive is compressed here and not on AWS"
    )
    return [buffering, Row("Firehose GZIP", aws_gzip, found, Verdict.DIFFERS, consequence)]


# ---- CloudWatch alarms ------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmSeen:
    # the probe alarm's state ALARM_WAIT_S after one breaching datapoint
    state: str
    periods: int


def observe_alarm(ctx: ProbeContext) -> AlarmSeen:
    """An alarm that needs ALARM_PERIODS breaching minutes out of as many, given one breaching datapoint."""
    cloudwatch = ctx.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=ctx.name,
        Namespace="Testbed/Parity",
        MetricName=ctx.name,
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=ALARM_PERIODS,
        DatapointsToAlarm=ALARM_PERIODS,
        Threshold=0.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="missing",
    )
    with Throwaway() as made:
        made.delete(f"alarm {ctx.name}", lambda: cloudwatch.delete_alarms(AlarmNames=[ctx.name]))
        cloudwatch.put_metric_data(Namespace="Testbed/Parity", MetricData=[{"MetricName": ctx.name, "Value": 1.0}])
        states: list[str] = []

        def alarmed() -> bool:
            states[:] = [a["StateValue"] for a in cloudwatch.describe_alarms(AlarmNames=[ctx.name])["MetricAlarms"]]
            return states == ["ALARM"]

        wait_until(alarmed, ALARM_WAIT_S)
    if len(states) != 1:
        raise RuntimeError(f"the probe alarm was not found after it was created ({len(states)} alarms)")
    return AlarmSeen(states[0], ALARM_PERIODS)


def judge_alarm(seen: AlarmSeen) -> Row:
    aws = (
        f"evaluates once a period and needs {seen.periods} breaching periods of {seen.periods}: "
        "one breaching datapoint does not set ALARM"
    )
    if seen.state == "ALARM":
        return Row(
            "Metric alarm evaluation",
            aws,
            f"ALARM at once after one breaching datapoint (DatapointsToAlarm {seen.periods} ignored)",
            Verdict.DIFFERS,
            "an alarm fires here sooner and on less evidence than on AWS: a test that sees it fire proves less",
        )
    return Row("Metric alarm evaluation", aws, f"{seen.state} after one breaching datapoint", Verdict.SAME, NONE_HERE)


# ---- Lambda, its SQS event source, its metrics ------------------------------------------------


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


def _refusal(call: Callable[[], Any], expected: str) -> str | None:
    """The error code a call was refused with, or None when it went through. Only the refusal AWS
    gives for the limit counts: any other error (access denied, throttling, an unsupported call) is
    no observation, and fails the probe."""
    try:
        call()
    except ClientError as error:
        if _code(error) != expected:
            raise
        return _code(error)
    return None


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


def _max_overlap(spans: list[tuple[float, float]]) -> int:
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
        reserved_error = _refusal(
            lambda: probe_function(made, lam, logs, f"{ctx.name}-env", role, {"AWS_REGION": "eu-west-1"}),
            "InvalidParameterValueException",
        )
        probe_function(made, lam, logs, ctx.name, role)
        queue_url = sqs.create_queue(QueueName=ctx.name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        made.delete(f"queue {ctx.name}", lambda: sqs.delete_queue(QueueUrl=queue_url))
        answer = json.loads(lam.invoke(FunctionName=ctx.name, Payload=b"{}")["Payload"].read() or b"{}")
        oversize = json.dumps({"pad": "x" * LAMBDA_MAX_SYNC_PAYLOAD_BYTES}).encode()
        oversize_error = _refusal(
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
        throttle_error = _refusal(lambda: lam.invoke(FunctionName=ctx.name, Payload=b"{}"), "TooManyRequestsException")
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
        max_overlap=_max_overlap([(start, end) for _, start, end in runs]),
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


# ---- the device-facing broker -----------------------------------------------------------------


@dataclass(frozen=True)
class BrokerSeen:
    # what answered a publish to another device's topic, and one over AWS's payload limit to its own
    foreign_topic: str
    oversize: str
    # ministack's IoT Core checks device policies only when the stack enforces IAM
    iam_enforced: bool = True


def _client(ctx: ProbeContext, device_id: str, protocol: MQTTProtocolVersion) -> mqtt.Client:
    target = ctx.mqtt_target()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=protocol)
    if target.tls is not None:
        client.tls_set_context(target.tls.context(device_id))
    if target.credentials is not None:
        client.username_pw_set(*target.credentials(device_id))
    return client


def _publish_outcome(
    ctx: ProbeContext, device_id: str, topic: str, payload: bytes, protocol: MQTTProtocolVersion
) -> str:
    """'accepted', 'refused (...)' or 'no answer': the broker's answer to one QoS 1 publish."""
    answers: list[str] = []
    answered = threading.Event()
    connected = threading.Event()
    closing = threading.Event()  # our own DISCONNECT is not the broker's answer

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            answers.append(f"connection refused ({reason})")
            answered.set()
        connected.set()

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        answers.append(f"refused (PUBACK {reason})" if reason.is_failure else "accepted")
        answered.set()

    def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not closing.is_set():
            answers.append(f"refused (disconnected: {reason})")
            answered.set()

    client = _client(ctx, device_id, protocol)
    client.on_connect, client.on_publish, client.on_disconnect = on_connect, on_publish, on_disconnect
    target = ctx.mqtt_target()
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        if not connected.wait(MQTT_WAIT_S):
            return "no answer to CONNECT"
        if not answers:
            client.publish(topic, payload, qos=1)
        answered.wait(MQTT_WAIT_S)
        return answers[0] if answers else "no answer"
    finally:
        closing.set()
        client.disconnect()
        client.loop_stop()


# The probe devices keep their names from run to run: a local broker keeps a device's password.
PROBE_SENDER, PROBE_OTHER = "parity-probe-a", "parity-probe-b"
# A rule that does not exist: what devices publish to its Basic Ingest topics reaches no rule of the
# stack (AWS checks the device's policy and the payload's size all the same), so the probes leave
# nothing in its queues, its dead-letter queue or its quarantine.
ABSENT_RULE = "parity_probe_absent_rule"


def observe_broker(ctx: ProbeContext) -> BrokerSeen:
    """One probe device publishes to the other's topic, then over the size limit to its own."""
    try:
        ctx.provision([PROBE_SENDER, PROBE_OTHER])

        def topic(device_id: str) -> str:
            return f"{BASIC_INGEST_PREFIX}{ABSENT_RULE}/{ctx.device_topic.format(device_id=device_id)}"

        foreign = _publish_outcome(ctx, PROBE_SENDER, topic(PROBE_OTHER), b'{"parity": "foreign"}', mqtt.MQTTv5)
        oversize = b"x" * (IOT_MAX_PAYLOAD_BYTES + 1)
        too_large = _publish_outcome(ctx, PROBE_SENDER, topic(PROBE_SENDER), oversize, mqtt.MQTTv5)
    finally:
        ctx.release([PROBE_SENDER, PROBE_OTHER])
    return BrokerSeen(foreign, too_large, ctx.iam_enforced)


def _answer_row(feature: str, aws: str, answer: str, consequence: str) -> Row:
    """A broker's answer: refused is what AWS does; accepted differs; anything else is unknown."""
    if answer.startswith("refused"):
        return Row(feature, aws, answer, Verdict.SAME, NONE_HERE)
    return Row(feature, aws, answer, Verdict.DIFFERS if answer == "accepted" else Verdict.UNKNOWN, consequence)


def judge_broker(seen: BrokerSeen) -> list[Row]:
    return [
        _answer_row(
            "IoT policy enforcement",
            "the device's IoT policy refuses a publish to another device's topic",
            seen.foreign_topic,
            "a device can publish as another here: a policy mistake does not show"
            + ("" if seen.iam_enforced else " (IAM is not enforced on this stack: IAM=enforce checks more)"),
        ),
        _answer_row(
            "MQTT payload limit",
            f"refuses an MQTT payload over {IOT_MAX_PAYLOAD_BYTES // 1024} KB",
            # the device's policy refused it before its size counted: no answer about the size
            seen.oversize.replace("refused", "policy refused", 1) if NOT_AUTHORIZED in seen.oversize else seen.oversize,
            "a device's publish that AWS refuses succeeds here: a device-side size bug does not show "
            "(on its rule's topic, the rule bridge dead-letters the payload, naming its size)",
        ),
    ]


# ---- the topic rule ---------------------------------------------------------------------------

_TOPIC_LEVEL = re.compile(r"\btopic\s*\(\s*(\d+)\s*\)\s+AS\s+([A-Za-z_]\w*)", re.IGNORECASE)
_FUNCTION = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_FROM = re.compile(r"\bFROM\s+'([^']*)'", re.IGNORECASE)


@dataclass(frozen=True)
class RuleSeen:
    sql: str
    topic: str
    payload: dict[str, Any]
    # the rule's output for the probe message; None: it produced none; an error: what was refused
    output: dict[str, Any] | None
    error: str | None
    engine: str
    # why the probe could not run the SQL at all (no observation either way)
    skipped: str | None = None


def rule_functions(sql: str) -> tuple[str, ...]:
    return tuple(sorted({name.lower() for name in _FUNCTION.findall(sql)}))


def observe_rule(ctx: ProbeContext) -> RuleSeen:
    """The deployed SQL on a probe message, by the engine this ingress mode uses."""
    sql = ctx.outputs.iot_rule_sql
    payload = {"parity": ctx.name, "n": 1}
    if ctx.ingress != "iot":
        topic = ctx.device_topic.format(device_id=ctx.name)
        try:
            out = parse_rule(sql).apply(Message(topic, json.dumps(payload).encode(), ctx.name, int(time.time() * 1000)))
        except (RuleError, RuleEvaluationError) as error:
            return RuleSeen(sql, topic, payload, None, str(error), "the rule bridge")
        return RuleSeen(sql, topic, payload, json.loads(out) if out is not None else None, None, "the rule bridge")
    return _observe_iot_rule(ctx, sql, payload)


def _observe_iot_rule(ctx: ProbeContext, sql: str, payload: dict[str, Any]) -> RuleSeen:
    """The emulator's IoT Core: the same SQL under a probe topic filter, its action into a probe queue."""
    engine = "the emulator's IoT Core"
    found = _FROM.search(sql)
    levels = found.group(1).split("/") if found else []
    if found is None or levels[0] in ("+", "#"):
        skipped = "its FROM has no literal first level to move aside"
        return RuleSeen(sql, "", payload, None, None, engine, skipped=skipped)
    probe_sql = sql[: found.start(1)] + "/".join([ctx.name, *levels[1:]]) + sql[found.end(1) :]
    topic = "/".join([ctx.name, *[ctx.name if level in ("+", "#") else level for level in levels[1:]]])
    iot, sqs = ctx.client("iot"), ctx.client("sqs")
    role = iot.get_topic_rule(ruleName=ctx.outputs.iot_rule_name)["rule"]["actions"][0]["sqs"]["roleArn"]
    rule_name = ctx.name.replace("-", "_")
    received: list[dict[str, Any]] = []
    with Throwaway() as made:
        queue_url = sqs.create_queue(QueueName=f"{ctx.name}-rule")["QueueUrl"]
        made.delete(f"queue {ctx.name}-rule", lambda: sqs.delete_queue(QueueUrl=queue_url))
        iot.create_topic_rule(
            ruleName=rule_name,
            topicRulePayload={
                "sql": probe_sql,
                "awsIotSqlVersion": "2016-03-23",
                "ruleDisabled": False,
                "actions": [{"sqs": {"queueUrl": queue_url, "roleArn": role, "useBase64": False}}],
            },
        )
        made.delete(f"rule {rule_name}", lambda: iot.delete_topic_rule(ruleName=rule_name))
        ctx.client("iot-data").publish(topic=topic, qos=1, payload=json.dumps(payload).encode())

        def arrived() -> bool:
            for message in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", []):
                received.append(json.loads(message["Body"]))
            return bool(received)

        wait_until(arrived, RULE_WAIT_S, every_s=0.1)
    return RuleSeen(probe_sql, topic, payload, received[0] if received else None, None, engine)


def judge_rule(seen: RuleSeen) -> Row:
    functions = rule_functions(seen.sql.split(" FROM ", 1)[0] if " FROM " in seen.sql else seen.sql)
    aws = f"evaluates the rule's SQL ({', '.join(functions) or 'no functions'}) and runs its actions"
    if seen.skipped is not None:
        return Row("Rule SQL", aws, f"{seen.engine}: not run, {seen.skipped}", Verdict.UNKNOWN, "")
    if seen.error is not None:
        return Row(
            "Rule SQL",
            aws,
            f"{seen.engine} refused it: {seen.error}",
            Verdict.DIFFERS,
            "messages this rule would carry on AWS are not carried here",
        )
    if seen.output is None:
        return Row("Rule SQL", aws, f"{seen.engine}: no output for the probe message", Verdict.UNKNOWN, "")
    wrong = []
    if re.search(r"SELECT\s+\*", seen.sql, re.IGNORECASE):
        wrong += [f"{k} missing" for k in seen.payload if k not in seen.output]
    levels = seen.topic.split("/")
    for index, alias in _TOPIC_LEVEL.findall(seen.sql):
        expected = levels[int(index) - 1] if 0 < int(index) <= len(levels) else None
        if seen.output.get(alias) != expected:
            wrong.append(f"{alias}={seen.output.get(alias)!r}, not {expected!r}")
    if wrong:
        return Row(
            "Rule SQL", aws, f"{seen.engine}: {'; '.join(wrong)}", Verdict.DIFFERS, "the processor sees other fields"
        )
    return Row("Rule SQL", aws, f"{seen.engine}: the fields AWS would produce", Verdict.SAME, NONE_HERE)


# ---- SQS and DynamoDB size limits ---------------------------------------------------------------


@dataclass(frozen=True)
class LimitsSeen:
    sqs_error: str | None
    dynamodb_error: str | None


def observe_limits(ctx: ProbeContext) -> LimitsSeen:
    """One byte over each limit, into a probe queue and a probe table."""
    sqs, dynamodb = ctx.client("sqs"), ctx.client("dynamodb")
    with Throwaway() as made:
        queue_url = sqs.create_queue(QueueName=f"{ctx.name}-size")["QueueUrl"]
        made.delete(f"queue {ctx.name}-size", lambda: sqs.delete_queue(QueueUrl=queue_url))
        body = "x" * (SQS_MAX_MESSAGE_BYTES + 1)
        sqs_error = _refusal(lambda: sqs.send_message(QueueUrl=queue_url, MessageBody=body), "InvalidParameterValue")
        dynamodb.create_table(
            TableName=ctx.name,
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        made.delete(f"table {ctx.name}", lambda: dynamodb.delete_table(TableName=ctx.name))
        if not wait_until(
            lambda: dynamodb.describe_table(TableName=ctx.name)["Table"]["TableStatus"] == "ACTIVE", RESOURCE_WAIT_S
        ):
            raise TimeoutError(f"the probe table was not active within {RESOURCE_WAIT_S:g} s")
        item = {"k": {"S": "parity"}, "v": {"S": "x" * DYNAMODB_MAX_ITEM_BYTES}}
        dynamodb_error = _refusal(lambda: dynamodb.put_item(TableName=ctx.name, Item=item), "ValidationException")
    return LimitsSeen(sqs_error, dynamodb_error)


def judge_limits(seen: LimitsSeen) -> list[Row]:
    rows = []
    for feature, aws, error, consequence in (
        (
            "SQS message size",
            f"refuses a message over {SQS_MAX_MESSAGE_BYTES:,} bytes",
            seen.sqs_error,
            "a message AWS refuses is queued here",
        ),
        (
            "DynamoDB item size",
            f"refuses an item over {DYNAMODB_MAX_ITEM_BYTES:,} bytes",
            seen.dynamodb_error,
            "an item AWS refuses is stored here: a size bug passes",
        ),
    ):
        if error is not None:
            rows.append(Row(feature, aws, f"refused ({error})", Verdict.SAME, NONE_HERE))
        else:
            rows.append(Row(feature, aws, "accepted", Verdict.DIFFERS, consequence))
    return rows
