"""Write accepted readings to DynamoDB with BatchWriteItem, retrying what is left unprocessed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from processor.retry import MAX_ATTEMPTS, backoff_delay
from processor.types import DynamoDBWriter, ItemKey, Telemetry
from telemetry.schema import SENSORS

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import WriteRequestTypeDef

logger = logging.getLogger(__name__)

BATCH_WRITE_MAX_ITEMS = 25
BOOLEAN_SENSORS = frozenset(name for name, sensor in SENSORS.items() if sensor.unit == "bool")
RETRYABLE_ERRORS = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError"}
)


def to_item(
    message: Telemetry,
    *,
    stored_at_ms: int,
    expires_at_s: int,
    arrived_at_ms: int | None = None,
    invoked_at_ms: int | None = None,
) -> dict[str, Any]:
    """The DynamoDB item (low-level attribute values, cheaper than the resource layer). With the
    message's arrival (the rule's hand-off) and its batch's start, each hop of its path is timed."""
    readings = {
        name: {"BOOL": bool(value)} if name in BOOLEAN_SENSORS else {"N": repr(round(value, 6))}
        for name, value in message.readings.items()
    }
    item: dict[str, Any] = {
        "device_id": {"S": message.device_id},
        "sk": {"S": message.sk},
        "msg_id": {"N": str(message.msg_id)},
        "ts": {"N": str(message.ts)},
        "device_type": {"S": message.device_type},
        "firmware": {"S": message.firmware},
        "readings": {"M": readings},
        "stored_at": {"N": str(stored_at_ms)},
        "expires_at": {"N": str(expires_at_s)},
    }
    if message.site:
        item["site"] = {"S": message.site}
    for name, at_ms in (("arrived_at", arrived_at_ms), ("invoked_at", invoked_at_ms)):
        if at_ms is not None:
            item[name] = {"N": str(at_ms)}
    return item


@dataclass(frozen=True)
class StoredReading:
    """A stored item read back (`from_item`): what `to_item` wrote, in Python types."""

    device_id: str
    sk: str
    msg_id: int
    ts: int
    device_type: str
    firmware: str
    readings: dict[str, float | bool]
    stored_at_ms: int
    expires_at_s: int
    site: str | None = None
    arrived_at_ms: int | None = None  # when the rule handed it on (the queue's SentTimestamp or the bridge's)
    invoked_at_ms: int | None = None  # when the processor's invocation that stored it started


def from_item(item: dict[str, Any]) -> StoredReading:
    """The inverse of `to_item`, for whatever reads the table (the testbed's reports, the tests)."""
    return StoredReading(
        device_id=item["device_id"]["S"],
        sk=item["sk"]["S"],
        msg_id=int(item["msg_id"]["N"]),
        ts=int(item["ts"]["N"]),
        device_type=item["device_type"]["S"],
        firmware=item["firmware"]["S"],
        readings={k: v["BOOL"] if "BOOL" in v else float(v["N"]) for k, v in item["readings"]["M"].items()},
        stored_at_ms=int(item["stored_at"]["N"]),
        expires_at_s=int(item["expires_at"]["N"]),
        site=item["site"]["S"] if "site" in item else None,
        arrived_at_ms=int(item["arrived_at"]["N"]) if "arrived_at" in item else None,
        invoked_at_ms=int(item["invoked_at"]["N"]) if "invoked_at" in item else None,
    )


class ReadingStore:
    """BatchWriteItem in chunks of 25; a redelivered message overwrites its own item."""

    def __init__(self, client: DynamoDBWriter, table: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._table = table
        self._sleep = sleep

    def put(self, items: Iterable[dict[str, Any]], out_of_time: Callable[[], bool] = lambda: False) -> set[ItemKey]:
        """Write the items; return the (device_id, sk) keys that still failed after retries, or
        were not tried: once `out_of_time()`, no chunk after the first starts (each delivery stores some)."""
        failed: set[ItemKey] = set()
        items = list(items)
        for start in range(0, len(items), BATCH_WRITE_MAX_ITEMS):
            chunk = items[start : start + BATCH_WRITE_MAX_ITEMS]
            if start and out_of_time():
                rest = items[start:]
                logger.warning("%d item(s) not written, to be retried: the invocation's deadline is near", len(rest))
                return failed | {_item_key(item) for item in rest}
            failed |= self._write_chunk(chunk, out_of_time)
        return failed

    def _write_chunk(self, items: list[dict[str, Any]], out_of_time: Callable[[], bool]) -> set[ItemKey]:
        pending: list[WriteRequestTypeDef] = [{"PutRequest": {"Item": item}} for item in items]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt > 1 and out_of_time():
                logger.warning("%d item(s) not written, to be retried: the invocation's deadline is near", len(pending))
                return {_item_key(r["PutRequest"]["Item"]) for r in pending}
            try:
                response = self._client.batch_write_item(RequestItems={self._table: pending})
                pending = response.get("UnprocessedItems", {}).get(self._table, [])
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in RETRYABLE_ERRORS:
                    raise
                logger.warning("BatchWriteItem throttled (attempt %d): %s", attempt, exc)
            if not pending:
                return set()
            if attempt < MAX_ATTEMPTS:
                self._sleep(backoff_delay(attempt))
        logger.warning("%d item(s) unprocessed after %d attempts", len(pending), MAX_ATTEMPTS)
        return {_item_key(r["PutRequest"]["Item"]) for r in pending}


def _item_key(item: Mapping[str, Any]) -> ItemKey:
    return (item["device_id"]["S"], item["sk"]["S"])
