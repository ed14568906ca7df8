"""Lambda entry point: SQS batch in, `batchItemFailures` out, via Powertools' batch processor."""

from __future__ import annotations

import gc
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from processor.config import Settings
from processor.exceptions import TransientFailure
from processor.pipeline import BatchOutcome, Clients, Pipeline
from processor.types import InboundRecord
from telemetry.schema import ARRIVAL_ATTRIBUTE

SERVICE = "telemetry-processor"
NAMESPACE = "IotPipeline"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
batch_processor = BatchProcessor(event_type=EventType.SQS)

_pipeline: Pipeline | None = None
# Move everything imported so far out of the collector's generations: a warm container then
# spends its GC time on the current batch, not on rescanning Powertools and botocore.
gc.freeze()


def _client(service: str, validate: bool = True) -> Any:
    """A client with standard retries. The hot path's clients skip botocore's client-side parameter
    validation: their requests are built by this code from validated messages, the service still
    validates them, and walking every attribute of 25 items per BatchWriteItem was a third of the
    client's CPU per message (`make bench`, README)."""
    config = Config(retries={"mode": "standard", "max_attempts": 3}, parameter_validation=validate)
    return boto3.client(service, config=config)  # type: ignore[call-overload]


def get_pipeline() -> Pipeline:
    """Built once per container: settings, clients and cached signing keys are reused."""
    global _pipeline
    if _pipeline is None:
        clients = Clients(
            dynamodb=_client("dynamodb", validate=False),
            firehose=_client("firehose", validate=False),
            s3=_client("s3"),
            sns=_client("sns"),
            secretsmanager=_client("secretsmanager"),
        )
        _pipeline = Pipeline(Settings.from_env(), clients)
    return _pipeline


def arrival_ms(record: dict[str, Any], now_ms: int) -> int:
    """When the record first entered the pipeline: the `ArrivalTimestamp` attribute a redrive from
    the DLQ keeps, else SQS `SentTimestamp` (the local bridge sets it to the MQTT receive time),
    else now; a value that is not a plausible past time in milliseconds is ignored.
    """
    attribute = (record.get("messageAttributes") or {}).get(ARRIVAL_ATTRIBUTE)
    first = attribute.get("stringValue") if isinstance(attribute, dict) else None
    for value in (first, (record.get("attributes") or {}).get("SentTimestamp")):
        try:
            at = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if 0 < at <= now_ms:
            return at
    return now_ms


def _emit_metrics(outcome: BatchOutcome) -> None:
    metrics.add_metric(name="Accepted", unit=MetricUnit.Count, value=outcome.accepted)
    metrics.add_metric(name="Duplicates", unit=MetricUnit.Count, value=outcome.duplicates)
    metrics.add_metric(name="Alerts", unit=MetricUnit.Count, value=outcome.alerts)
    metrics.add_metric(name="RetriedRecords", unit=MetricUnit.Count, value=len(outcome.failed))
    if outcome.lag_ms:
        metrics.add_metric(name="EndToEndLagMax", unit=MetricUnit.Milliseconds, value=max(outcome.lag_ms))
        metrics.add_metric(
            name="EndToEndLagMean", unit=MetricUnit.Milliseconds, value=sum(outcome.lag_ms) / len(outcome.lag_ms)
        )
    for reason, count in outcome.rejected.items():
        with single_metric(name="Rejected", unit=MetricUnit.Count, value=count, namespace=NAMESPACE) as metric:
            metric.add_dimension(name="reason", value=reason.value)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    started = time.perf_counter()
    records = event.get("Records", [])
    if not records:  # Powertools refuses an event with no records; there is nothing to fail
        return {"batchItemFailures": []}
    now_ms = int(time.time() * 1000)
    try:
        outcome = get_pipeline().process(
            [InboundRecord(r["messageId"], r["body"], arrival_ms(r, now_ms)) for r in records],
            lease_s=context.get_remaining_time_in_millis() / 1000,
        )
    except TransientFailure as exc:
        logger.warning("batch deferred, every record will be retried: %s", exc)
        outcome = BatchOutcome(failed={r["messageId"] for r in records})
    _emit_metrics(outcome)
    logger.info(
        "batch processed",
        extra={
            "records": len(records),
            "accepted": outcome.accepted,
            "duplicates": outcome.duplicates,
            "rejected": {r.value: n for r, n in outcome.rejected.items()},
            "retried": len(outcome.failed),
            "alerts": outcome.alerts,
            # what AWS bills an invocation by (the cost section of a run's report reads it)
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )

    def record_handler(record: SQSRecord) -> None:
        if record.message_id in outcome.failed:
            raise TransientFailure(f"record {record.message_id} will be retried")

    return process_partial_response(
        event=event, record_handler=record_handler, processor=batch_processor, context=context
    )
