"""Archive raw messages through Firehose: NDJSON lines packed into few records per invocation."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from processor.retry import MAX_ATTEMPTS, backoff_delay
from processor.types import FirehoseWriter

logger = logging.getLogger(__name__)

FIREHOSE_MAX_RECORD_BYTES = 1000 * 1024
PUT_RECORD_BATCH_MAX_RECORDS = 500
PUT_RECORD_BATCH_MAX_BYTES = 4 * 1024 * 1024


@dataclass
class _Record:
    data: bytearray = field(default_factory=bytearray)
    keys: list[Hashable] = field(default_factory=list)


def pack_lines(
    lines: Sequence[tuple[Hashable, str]], max_record_bytes: int = FIREHOSE_MAX_RECORD_BYTES
) -> list[_Record]:
    """Pack (key, json line) pairs into records of whole lines, each at most `max_record_bytes`."""
    records: list[_Record] = []
    current = _Record()
    for key, line in lines:
        data = line.replace("\n", " ").replace("\r", " ").encode() + b"\n"
        if current.data and len(current.data) + len(data) > max_record_bytes:
            records.append(current)
            current = _Record()
        current.data += data
        current.keys.append(key)
    if current.data:
        records.append(current)
    return records


def _calls(records: list[_Record]) -> list[list[_Record]]:
    """Group records into PutRecordBatch calls within the count and size limits."""
    calls: list[list[_Record]] = []
    current: list[_Record] = []
    size = 0
    for record in records:
        if current and (
            len(current) == PUT_RECORD_BATCH_MAX_RECORDS or size + len(record.data) > PUT_RECORD_BATCH_MAX_BYTES
        ):
            calls.append(current)
            current, size = [], 0
        current.append(record)
        size += len(record.data)
    if current:
        calls.append(current)
    return calls


class Archiver:
    """PutRecordBatch with retries of exactly the records that failed (FailedPutCount)."""

    def __init__(
        self,
        client: FirehoseWriter,
        stream: str,
        sleep: Callable[[float], None] = time.sleep,
        max_record_bytes: int = FIREHOSE_MAX_RECORD_BYTES,
    ) -> None:
        self._client = client
        self._stream = stream
        self._sleep = sleep
        self._max_record_bytes = max_record_bytes

    def archive(self, lines: Sequence[tuple[Hashable, str]]) -> set[Hashable]:
        """Archive the lines; return the keys whose record still failed after retries."""
        failed: set[Hashable] = set()
        for call in _calls(pack_lines(lines, self._max_record_bytes)):
            for record in self._put(call):
                failed.update(record.keys)
        return failed

    def _put(self, pending: list[_Record]) -> list[_Record]:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = self._client.put_record_batch(
                    DeliveryStreamName=self._stream, Records=[{"Data": bytes(r.data)} for r in pending]
                )
                if response.get("FailedPutCount", 0):
                    results = response["RequestResponses"]
                    pending = [r for r, result in zip(pending, results, strict=True) if result.get("ErrorCode")]
                else:
                    pending = []
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("ServiceUnavailableException", "ThrottlingException"):
                    raise
                logger.warning("PutRecordBatch throttled (attempt %d): %s", attempt, exc)
            if not pending:
                return []
            if attempt < MAX_ATTEMPTS:
                self._sleep(backoff_delay(attempt))
        logger.warning("%d Firehose record(s) failed after %d attempts", len(pending), MAX_ATTEMPTS)
        return pending
