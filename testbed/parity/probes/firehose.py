"""Firehose: does it buffer, compress and deliver as the stream's settings ask?"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from testbed.parity.probes.common import NONE_HERE
from testbed.parity.throwaway import (
    RESOURCE_WAIT_S,
    Throwaway,
    probe_role,
    wait_until,
)
from testbed.parity.types import ProbeContext, Row, Verdict

FIREHOSE_RECORDS = 3
FIREHOSE_WAIT_S = 3.0
GZIP_MAGIC = b"\x1f\x8b"


def _bucket_args(region: str) -> dict[str, Any]:
    return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}


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
