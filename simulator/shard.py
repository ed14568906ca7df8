"""One slice of a fleet, so that machines that know nothing of each other can split a run.

Shard i of N (counted from 0, as a Kubernetes Indexed Job numbers its completions) holds every Nth
device of the fleet's order, starting at the ith: the N shards are disjoint, their union is the
fleet, and each device's messages are the ones an unsharded run would send (a device's stream
depends on the seed and its own place in the fleet only).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from simulator.exceptions import SimulatorError

_SHARD = re.compile(r"(\d+)/(\d+)")
# More shards than this would be a typo rather than a plan (and a listing of missing ones, unreadable).
MAX_SHARDS = 10_000


class ShardError(SimulatorError):
    """A shard that is not `i/N` with 0 <= i < N, or one that holds no device."""


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        found = _SHARD.fullmatch(text.strip())
        if found is None:
            raise ShardError(f"shard {text!r} is not i/N (for example 0/3: the first of three, counted from 0)")
        index, count = int(found.group(1)), int(found.group(2))
        if not 1 <= count <= MAX_SHARDS:
            raise ShardError(f"shard {text!r}: N must be 1 to {MAX_SHARDS:,}")
        if index >= count:
            raise ShardError(f"shard {text!r}: i counts from 0, so it must be below N ({count})")
        return cls(index, count)

    def select(self, device_ids: Sequence[str]) -> list[str]:
        """This shard's devices, in the fleet's order; a shard with none is refused."""
        chosen = list(device_ids[self.index :: self.count])
        if not chosen:
            raise ShardError(f"shard {self} of a {len(device_ids)}-device fleet holds no device: use fewer shards")
        return chosen

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
