"""AWS IoT Core's quotas (toolkit/iot_quotas.py) as a model a scenario or the command line can
change, and the windows that enforce them."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from toolkit.iot_quotas import (
    ACCOUNT_PUBLISHES_PER_S,
    BYTES_PER_S_PER_CONNECTION,
    CONNECTS_PER_S_PER_CLIENT_ID,
    MAX_PAYLOAD_BYTES,
    PUBLISHES_PER_S_PER_CONNECTION,
)

# what a run may set: far above AWS's own adjustable ceilings, to refuse a typo rather than take it
MAX_RATE = 10_000_000


class Quota(StrEnum):
    """A quota a device can hit, as the ledger and the report name it."""

    PUBLISH_RATE = "publishes per second per connection"
    THROUGHPUT = "bytes per second per connection"
    ACCOUNT_RATE = "inbound publishes per second per account"
    CONNECT_RATE = "connects per second per client id"
    PAYLOAD_SIZE = "payload size"


# What AWS does past each one: a throttled publish gets no PUBACK (QoS 1) or is dropped (QoS 0) and
# the connection stays; a throttled CONNECT and an oversized payload end the connection.
CLOSES_CONNECTION = frozenset({Quota.CONNECT_RATE, Quota.PAYLOAD_SIZE})


class IotQuotas(BaseModel):
    """The quotas the gate enforces; AWS's defaults unless a scenario or a flag changes one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    publishes_per_s: float = Field(default=PUBLISHES_PER_S_PER_CONNECTION, gt=0, le=MAX_RATE)
    bytes_per_s: float = Field(default=BYTES_PER_S_PER_CONNECTION, gt=0, le=MAX_RATE * 1024)
    connects_per_s: float = Field(default=CONNECTS_PER_S_PER_CLIENT_ID, gt=0, le=MAX_RATE)
    max_payload_bytes: int = Field(default=MAX_PAYLOAD_BYTES, gt=0, le=MAX_PAYLOAD_BYTES)
    account_publishes_per_s: float = Field(default=ACCOUNT_PUBLISHES_PER_S, gt=0, le=MAX_RATE)

    @model_validator(mode="after")
    def _a_payload_fits_a_second(self) -> IotQuotas:
        if self.bytes_per_s < self.max_payload_bytes:
            raise ValueError(
                f"bytes_per_s {self.bytes_per_s:g} is below max_payload_bytes {self.max_payload_bytes}: "
                "a payload that large would be throttled for ever"
            )
        return self


class RateWindow:
    """At most `limit` (publishes, or bytes) within any one second: a burst up to the limit is
    taken, and no second ever carries more, from the first one on."""

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.total = 0.0
        self._taken: deque[tuple[float, float]] = deque()
        self._clock = clock

    def has(self, amount: float) -> bool:
        since = self._clock() - 1.0
        while self._taken and self._taken[0][0] <= since:
            self.total -= self._taken.popleft()[1]
        return self.total + amount <= self.limit

    def take(self, amount: float) -> None:
        self._taken.append((self._clock(), amount))
        self.total += amount


class ConnectLimiter:
    """One CONNECT per client id per interval; remembers only the ids accepted within the last
    interval, oldest first, so forgetting one costs O(1) however many devices connect."""

    def __init__(self, per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / per_s
        self._clock = clock
        self._last: OrderedDict[str, float] = OrderedDict()

    def allow(self, client_id: str) -> bool:
        now = self._clock()
        while self._last and now - next(iter(self._last.values())) >= self.interval:
            self._last.popitem(last=False)
        if client_id in self._last:
            return False
        self._last[client_id] = now
        return True

    def __len__(self) -> int:
        return len(self._last)
