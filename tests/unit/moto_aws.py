"""The processor's AWS resources in moto, created as infra/ creates them, behind fault-injecting proxies.

Moto evaluates key schemas, condition expressions, secret version stages and SNS-to-SQS delivery
as AWS does, so a test of the processor meets AWS's semantics rather than a fake's reading of them.
A proxy adds only what a test needs on purpose (throttling, unprocessed items, an outage) and the
one limit moto leaves out (25 requests per BatchWriteItem). Firehose stays the hand fake in
testbed/bench/fakes.py: moto's PutRecordBatch enforces none of AWS's limits. The property tests keep the
quarantine in memory (`MemoryBucket`): at ~3 ms a request, moto's S3 would add tens of seconds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, Unpack, cast

import boto3
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from moto import mock_aws
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_dynamodb.type_defs import BatchWriteItemInputTypeDef, UpdateItemInputTypeDef, UpdateItemOutputTypeDef
from mypy_boto3_s3 import S3Client
from mypy_boto3_s3.type_defs import PutObjectOutputTypeDef, PutObjectRequestTypeDef
from mypy_boto3_secretsmanager import SecretsManagerClient
from mypy_boto3_secretsmanager.type_defs import GetSecretValueRequestTypeDef, GetSecretValueResponseTypeDef
from mypy_boto3_sns import SNSClient
from mypy_boto3_sns.type_defs import PublishInputTypeDef, PublishResponseTypeDef
from mypy_boto3_sqs import SQSClient

from processor.config import Settings
from processor.pipeline import Clients, Pipeline
from processor.quarantine import QUARANTINE_PREFIX
from telemetry.outputs import StackOutputs
from testbed.bench.fakes import BATCH_WRITE_MAX_REQUESTS, SIGNING_KEY, FakeFirehose, client_error
from testbed.stores import Stores

REGION = "us-east-1"
# AWS's limit, written out rather than imported from processor/: a wrong constant there must fail here.
S3_MAX_KEY_BYTES = 1024

C = TypeVar("C", bound=BaseClient)


@dataclass(frozen=True)
class MotoClients:
    """Real boto3 clients, made once per session (each costs tens of ms); moto answers them while mocking."""

    dynamodb: DynamoDBClient
    s3: S3Client
    sns: SNSClient
    sqs: SQSClient
    secretsmanager: SecretsManagerClient

    @classmethod
    def create(cls) -> MotoClients:
        session = boto3.session.Session(
            region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        return cls(
            session.client("dynamodb"),
            session.client("s3"),
            session.client("sns"),
            session.client("sqs"),
            session.client("secretsmanager"),
        )


@dataclass
class _Fault:
    code: str
    times: int | None  # None: every call until `recover`
    match: dict[str, str]


class _Proxy(Generic[C]):
    """Counts calls per operation and raises the AWS errors `fail` queued; subclasses delegate the rest to moto."""

    def __init__(self, client: C) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()
        self._faults: dict[str, _Fault] = {}

    def fail(self, operation: str, code: str, times: int | None = 1, **match: str) -> None:
        """The next `times` calls of `operation` (all, if None) whose request has the `match` values raise
        `code`, replacing what was queued for it before."""
        self._faults[operation] = _Fault(code, times, match)

    def recover(self) -> None:
        self._faults.clear()

    def _call(self, operation: str, request: Mapping[str, object]) -> None:
        self.calls[operation] += 1
        fault = self._faults.get(operation)
        if fault is None or fault.times == 0 or any(request.get(k) != v for k, v in fault.match.items()):
            return
        if fault.times is not None:
            fault.times -= 1
        raise _aws_error(self.client, fault.code, operation, "injected by the test")


def _aws_error(client: BaseClient, code: str, operation: str, message: str) -> ClientError:
    """The error a real client raises: the service's modeled exception class where it declares `code`."""
    error_class = cast("type[ClientError]", client.exceptions.from_code(code))  # the stubs say an instance
    return error_class({"Error": {"Code": code, "Message": message}}, operation)


class DynamoDBProxy(_Proxy[DynamoDBClient]):
    """BatchWriteItem and UpdateItem through moto. BatchWriteItem refuses more than 25 requests as AWS
    does (moto accepts any number), and `leave_unprocessed` makes it hand items back unwritten in
    UnprocessedItems, as a throttled table does. `written` holds the items moto accepted, which the
    property tests read instead of scanning the table at every example."""

    def __init__(self, client: DynamoDBClient) -> None:
        super().__init__(client)
        self.written: list[Mapping[str, Any]] = []
        self._unprocessed: int | None = 0

    def leave_unprocessed(self, items: int | None) -> None:
        """The next `items` write requests (all of them, if None) come back unprocessed."""
        self._unprocessed = items

    def recover(self) -> None:
        super().recover()
        self._unprocessed = 0

    def batch_write_item(self, **kwargs: Unpack[BatchWriteItemInputTypeDef]) -> dict[str, Any]:
        self._call("BatchWriteItem", kwargs)
        ((table, requests),) = kwargs["RequestItems"].items()
        if len(requests) > BATCH_WRITE_MAX_REQUESTS:
            raise _aws_error(self.client, "ValidationException", "BatchWriteItem", "Member must have length <= 25")
        skipped = len(requests) if self._unprocessed is None else min(self._unprocessed, len(requests))
        if self._unprocessed is not None:
            self._unprocessed -= skipped
        unprocessed, written = list(requests[:skipped]), requests[skipped:]
        response: dict[str, Any] = {"UnprocessedItems": {}}
        if written:
            response = dict(self.client.batch_write_item(RequestItems={table: written}))
        unprocessed += response["UnprocessedItems"].get(table, [])
        self.written += [r["PutRequest"]["Item"] for r in written if "PutRequest" in r and r not in unprocessed]
        response["UnprocessedItems"] = {table: unprocessed} if unprocessed else {}
        return response

    def update_item(self, **kwargs: Unpack[UpdateItemInputTypeDef]) -> UpdateItemOutputTypeDef:
        self._call("UpdateItem", kwargs)
        return self.client.update_item(**kwargs)


class S3Proxy(_Proxy[S3Client]):
    def put_object(self, **kwargs: Unpack[PutObjectRequestTypeDef]) -> PutObjectOutputTypeDef:
        self._call("PutObject", kwargs)
        return self.client.put_object(**kwargs)


class SNSProxy(_Proxy[SNSClient]):
    def publish(self, **kwargs: Unpack[PublishInputTypeDef]) -> PublishResponseTypeDef:
        self._call("Publish", kwargs)
        return self.client.publish(**kwargs)


class SecretsProxy(_Proxy[SecretsManagerClient]):
    def get_secret_value(self, **kwargs: Unpack[GetSecretValueRequestTypeDef]) -> GetSecretValueResponseTypeDef:
        self._call("GetSecretValue", kwargs)
        return self.client.get_secret_value(**kwargs)


@dataclass
class MemoryBucket:
    """The archive bucket in memory, for the property tests, which put and read back thousands of
    quarantine documents a run: moto's S3 answers in ~3 ms a request. A hostile record controls
    nothing S3 checks of that PutObject (the key is the reason and the SQS message id), so this
    refuses what S3 would (another bucket, a key over 1,024 bytes) and keeps each key's last body."""

    bucket: str
    objects: dict[str, bytes] = field(default_factory=dict)

    def put_object(self, **kwargs: Unpack[PutObjectRequestTypeDef]) -> dict[str, Any]:
        key, body = kwargs["Key"], kwargs.get("Body")
        if kwargs["Bucket"] != self.bucket:
            raise client_error("NoSuchBucket", "PutObject", "The specified bucket does not exist")
        if len(key.encode()) > S3_MAX_KEY_BYTES:
            raise client_error("KeyTooLongError", "PutObject", "Your key is too long")
        assert isinstance(body, bytes), "the processor puts bytes"
        self.objects[key] = body
        return {}

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for key, body in self.objects.items() if key.startswith(QUARANTINE_PREFIX)]


@dataclass
class MotoAws:
    """One test's AWS account: the resources `settings` names, the proxies the processor calls, and
    readers that go through the real APIs (`stores` is what the end-to-end tests read with)."""

    settings: Settings
    clients: MotoClients
    stores: Stores
    dynamodb: DynamoDBProxy
    s3: S3Proxy
    sns: SNSProxy
    secrets: SecretsProxy
    firehose: FakeFirehose = field(default_factory=FakeFirehose)
    memory_bucket: MemoryBucket | None = None  # stands in for `s3` once `start_example` set it
    _alerts: list[dict[str, Any]] = field(default_factory=list)

    def pipeline(self, clock: Callable[[], float] = time.time) -> Pipeline:
        s3 = self.s3 if self.memory_bucket is None else self.memory_bucket
        clients = Clients(self.dynamodb, self.firehose, s3, self.sns, self.secrets)
        return Pipeline(self.settings, clients, clock=clock, sleep=lambda _: None)

    def quarantined(self) -> list[dict[str, Any]]:
        """The quarantine documents, read back from the bucket."""
        if self.memory_bucket is not None:
            return self.memory_bucket.documents()
        return self.stores.quarantined()

    def readings(self) -> list[tuple[str, str]]:
        """(device_id, sk) of every item in the telemetry table."""
        pages = self.clients.dynamodb.get_paginator("scan").paginate(
            TableName=self.settings.telemetry_table, ConsistentRead=True
        )
        return [(item["device_id"]["S"], item["sk"]["S"]) for page in pages for item in page["Items"]]

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert published so far, as the alerts tap queue received it."""
        self._alerts += self.stores.drain_alerts(wait_s=0)
        return list(self._alerts)

    def rotate_key(self, key: bytes) -> None:
        """Rotate the signing secret as a rotation function does: stage the new version AWSPENDING, then
        move AWSCURRENT to it (Secrets Manager moves AWSPREVIOUS to the version it leaves)."""
        secret, sm = self.settings.signing_secret_arn, self.clients.secretsmanager
        current = sm.get_secret_value(SecretId=secret, VersionStage="AWSCURRENT")["VersionId"]
        pending = sm.put_secret_value(SecretId=secret, SecretString=key.decode(), VersionStages=["AWSPENDING"])
        sm.update_secret_version_stage(
            SecretId=secret,
            VersionStage="AWSCURRENT",
            MoveToVersionId=pending["VersionId"],
            RemoveFromVersionId=current,
        )

    def start_example(self) -> None:
        """A fresh start for one example of a property test: forget what was written (read from
        `dynamodb.written`, not the table, which keeps growing) and archived, and quarantine into a
        new, empty `MemoryBucket`."""
        self.dynamodb.written.clear()
        self.firehose.records.clear()
        self.memory_bucket = MemoryBucket(self.settings.archive_bucket)


def _outputs(settings: Settings, tap_url: str) -> StackOutputs:
    """The stack outputs the readers in testbed/stores.py use; the ingress's name nothing in a unit test."""
    return StackOutputs(
        ingest_queue_url="",
        dlq_url="",
        processor_function_name="",
        iot_rule_name="",
        iot_rule_sql="",
        region=REGION,
        telemetry_table_name=settings.telemetry_table,
        archive_bucket_name=settings.archive_bucket,
        alerts_tap_queue_url=tap_url,
    )


@contextmanager
def moto_aws(clients: MotoClients, settings: Settings) -> Iterator[MotoAws]:
    """A fresh moto account with the tables, bucket, topic and tap queue, and signing secret that
    `settings` names, keyed and configured as infra/ creates them (KMS, TTL and PITR left out: moto
    does not act on them). The settings are returned with the ARNs moto assigned."""
    with mock_aws():
        ddb = clients.dynamodb
        ddb.create_table(
            TableName=settings.telemetry_table,
            KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "device_id", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.create_table(
            TableName=settings.alert_state_table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        clients.s3.create_bucket(Bucket=settings.archive_bucket)
        clients.s3.put_bucket_versioning(Bucket=settings.archive_bucket, VersioningConfiguration={"Status": "Enabled"})
        topic = clients.sns.create_topic(Name=settings.alerts_topic_arn.rsplit(":", 1)[-1])["TopicArn"]
        tap = clients.sqs.create_queue(QueueName="alerts-tap")["QueueUrl"]
        tap_arn = clients.sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=tap_arn)  # SNS envelopes, as in infra/
        secret = clients.secretsmanager.create_secret(Name="device-signing-key", SecretString=SIGNING_KEY.decode())
        settings = dataclasses.replace(settings, alerts_topic_arn=topic, signing_secret_arn=secret["ARN"])
        yield MotoAws(
            settings=settings,
            clients=clients,
            stores=Stores(_outputs(settings, tap), clients.dynamodb, clients.s3, clients.sqs),
            dynamodb=DynamoDBProxy(clients.dynamodb),
            s3=S3Proxy(clients.s3),
            sns=SNSProxy(clients.sns),
            secrets=SecretsProxy(clients.secretsmanager),
        )
