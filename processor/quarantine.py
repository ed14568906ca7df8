"""Keep every rejected record, with its reason and original body, under quarantine/ in S3."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from processor.types import ObjectWriter, Rejection

QUARANTINE_PREFIX = "quarantine/"


def quarantine_key(rejection: Rejection, now_s: float) -> str:
    """One object per record id: a redelivered rejected record overwrites its own object."""
    day = time.strftime("%Y-%m-%d", time.gmtime(now_s))
    safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in rejection.record_id)
    return f"{QUARANTINE_PREFIX}reason={rejection.reason.value}/date={day}/{safe_id}.json"


def quarantine_document(rejection: Rejection, now_s: float) -> dict[str, Any]:
    """The stored document; a body that is not valid UTF-8 is kept base64-encoded."""
    try:
        body, encoding = rejection.body.encode().decode(), "utf-8"
    except UnicodeEncodeError:
        body = base64.b64encode(rejection.body.encode("utf-8", "surrogateescape")).decode()
        encoding = "base64"
    return {
        "reason": rejection.reason.value,
        "detail": rejection.detail,
        "record_id": rejection.record_id,
        "quarantined_at": int(now_s * 1000),
        "body_encoding": encoding,
        "body": body,
    }


class Quarantine:
    def __init__(self, client: ObjectWriter, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def put(self, rejection: Rejection, now_s: float) -> None:
        self._client.put_object(
            Bucket=self._bucket,
            Key=quarantine_key(rejection, now_s),
            Body=json.dumps(quarantine_document(rejection, now_s)).encode(),
            ContentType="application/json",
        )
