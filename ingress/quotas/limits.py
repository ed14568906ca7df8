"""AWS IoT Core's quotas (toolkit/iot_quotas.py) as a model a scenario or the command line can
change, and the windows that enforce them."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from toolkit.iot_quotas import (
    ACCOUNT_PUBLISHES_PER_S,
    BYTES_PER_S_PER_CONNECTION,
    CONNECTS_PER_S_PER_CLIENT_ID,
    MAX_PAYLOAD_BYTES,
    PUBLISHES_PER_S_PER_CONNECTION,
)

# what a run may set: far above AWS's own adjustable ceilings, to refuse a typo rather than take it
MAX_RATE = 10_000_000
# client ids a ConnectLimiter keeps before it forgets those past their interval
MAX_REMEMBERED_IDS = 10_000


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
    """One CONNECT per client id per interval; remembers only ids seen within the last interval."""

    def __init__(self, per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / per_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def allow(self, client_id: str) -> bool:
        now = self._clock()
        if len(self._last) > MAX_REMEMBERED_IDS:
            self._last = {c: at for c, at in self._last.items() if now - at < self.interval}
        last = self._last.get(client_id)
        if last is not None and now - last < self.interval:
            return False
        self._last[client_id] = now
        return True
