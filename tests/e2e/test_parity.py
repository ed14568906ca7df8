"""The parity report on the session's stack: every row from its probe, against what its emulator
(ministack, or LocalStack without Docker) and the broker (Mosquitto) are known to do, and a changed
setting changing its row."""

from __future__ import annotations

import time

import pytest

from testbed.lifecycle.backends import LocalStackHostBackend
from testbed.lifecycle.stack import Stack
from testbed.parity.report import PROBES, context_of, run_probes
from testbed.parity.types import Row, Verdict
from testbed.stores import Stores
from tests.e2e.conftest import needs_iot_core

pytestmark = pytest.mark.e2e

# What the probes find on ministack 1.5.33 and Mosquitto 2.0 (direct ingress); a release that
# changes one of these changes its row, and this test says which.
EMBEDDED = {
    "Firehose buffering": (Verdict.DIFFERS, "3 object(s) for 3 records"),
    "Firehose GZIP": (Verdict.DIFFERS, "uncompressed objects"),
    "Metric alarm evaluation": (Verdict.DIFFERS, "ALARM at once"),
    "Lambda runtime": (Verdict.SAME, "ran it on Python 3.12."),
    "Reserved Lambda env keys": (Verdict.DIFFERS, "accepted a function with AWS_REGION set"),
    "Lambda throttling": (Verdict.SAME, "throttled (TooManyRequestsException)"),
    "Lambda payload limit": (Verdict.DIFFERS, "ran an invocation over the limit"),
    "SQS event source batches": (Verdict.SAME, "largest 10"),
    "SQS event source concurrency": (Verdict.SAME, "at most"),
    "Metrics behind your alarms": (Verdict.DIFFERS, "publishes AWS/Lambda; not AWS/SQS"),
    "IoT policy enforcement": (Verdict.SAME, "refused (PUBACK Not authorized)"),
    "MQTT payload limit": (Verdict.DIFFERS, "accepted"),
    "IoT Core message broker quotas": (Verdict.DIFFERS, "150 of 150 publishes at once acknowledged"),
    "Rule SQL": (Verdict.SAME, "the rule bridge: the fields AWS would produce"),
    "SQS message size": (Verdict.SAME, "refused (InvalidParameterValue)"),
    "DynamoDB item size": (Verdict.SAME, "refused (ValidationException)"),
}


# What the probes find on LocalStack 4.14.0 as a host process (DynamoDB from moto, Lambda as local
# processes of localstack_plugins/) behind Mosquitto and the rule bridge.
LOCALSTACK = {
    **EMBEDDED,
    "Firehose buffering": (Verdict.DIFFERS, "1 object(s) for 3 records"),
    "Metric alarm evaluation": (Verdict.SAME, "INSUFFICIENT_DATA after one breaching datapoint"),
    "Metrics behind your alarms": (Verdict.SAME, "publishes AWS/Lambda, AWS/SQS"),
}


def _expected(stack: Stack) -> dict[str, tuple[Verdict, str]]:
    return LOCALSTACK if isinstance(stack.backend, LocalStackHostBackend) else EMBEDDED


def _by_feature(rows: list[Row]) -> dict[str, Row]:
    return {row.feature: row for row in rows}


def _leftovers(stack: Stack) -> list[str]:
    client = stack.client
    names = [f["FunctionName"] for f in client("lambda").list_functions()["Functions"]]
    names += client("sqs").list_queues().get("QueueUrls", [])
    names += [b["Name"] for b in client("s3").list_buckets()["Buckets"]]
    names += client("dynamodb").list_tables()["TableNames"]
    names += [a["AlarmName"] for a in client("cloudwatch").describe_alarms()["MetricAlarms"]]
    names += [r["RoleName"] for r in client("iam").list_roles()["Roles"]]
    names += client("firehose").list_delivery_streams()["DeliveryStreamNames"]
    return [name for name in names if "parity-" in name]


def test_every_row_comes_from_its_probe_on_the_embedded_stack(stack: Stack, stores: Stores) -> None:
    stack.use_ingress("direct")
    letters, quarantined = len(stores.dead_letters()), len(stores.quarantined())
    try:
        rows = _by_feature(run_probes(context_of(stack)))
    finally:
        stack.use_ingress(stack.ingress)
    time.sleep(2)  # what a probe's publish would cause comes through the bridge within a batch or two
    assert list(rows) == [feature for features, _ in PROBES for feature in features]
    found = {feature: (row.verdict, row.backend) for feature, row in rows.items()}
    for feature, (verdict, seen) in _expected(stack).items():
        assert found[feature][0] is verdict and seen in found[feature][1], (feature, found[feature])
    assert all(row.consequence for row in rows.values() if row.verdict is not Verdict.UNKNOWN)
    if rows["Metrics behind your alarms"].verdict is Verdict.DIFFERS:
        assert "dlq-depth" in rows["Metrics behind your alarms"].consequence
    assert _leftovers(stack) == []
    # the probes' publishes go to a rule that does not exist: nothing of theirs in the stack's stores
    assert (len(stores.dead_letters()), len(stores.quarantined())) == (letters, quarantined)


def test_a_larger_batch_size_on_the_mapping_changes_the_batches_row(stack: Stack) -> None:
    """The stack's own mapping asks for 50: AWS would deliver batches of 50; ministack caps at 10,
    LocalStack delivers 50."""
    lam = stack.client("lambda")
    (mapping,) = lam.list_event_source_mappings(FunctionName=stack.outputs().processor_function_name)[
        "EventSourceMappings"
    ]
    before = {k: mapping[k] for k in ("BatchSize", "MaximumBatchingWindowInSeconds")}
    lam.update_event_source_mapping(UUID=mapping["UUID"], BatchSize=50, MaximumBatchingWindowInSeconds=1)
    try:
        (probe,) = [probe for features, probe in PROBES if "SQS event source batches" in features]
        rows = _by_feature(probe(context_of(stack)))
    finally:
        lam.update_event_source_mapping(UUID=mapping["UUID"], **before)
    batches = rows["SQS event source batches"]
    assert "batches of up to 50" in batches.aws
    if isinstance(stack.backend, LocalStackHostBackend):
        assert batches.verdict is Verdict.SAME and "largest 50" in batches.backend, batches
    else:
        assert batches.verdict is Verdict.DIFFERS, batches
        assert "largest 10" in batches.backend and "5x as often" in batches.consequence


def test_iot_core_ingress_probes_the_emulators_broker_and_rule(stack: Stack) -> None:
    """The emulator's IoT Core checks the devices' policy (the tests enforce IAM), and its rule engine runs the SQL."""
    needs_iot_core(stack)
    stack.use_ingress("iot")
    try:
        rows = _by_feature(run_probes(context_of(stack)))
    finally:
        stack.use_ingress(stack.ingress)
    policy = rows["IoT policy enforcement"]
    assert policy.verdict is Verdict.SAME and policy.backend.startswith("refused"), policy
    assert rows["Rule SQL"].verdict is Verdict.SAME
    assert rows["Rule SQL"].backend.startswith("the emulator's IoT Core")
