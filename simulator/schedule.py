"""Rate profiles and the open-loop schedule: a send happens when it is due, whatever came before."""

from __future__ import annotations

import heapq
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulator.devices import Device


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constant(_Profile):
    kind: Literal["constant"] = "constant"

    def multiplier(self, elapsed_s: float) -> float:
        return 1.0

    def peak(self) -> float:
        return 1.0


class Ramp(_Profile):
    """From `start` to `end` times the fleet's nominal rate over `over_s` seconds."""

    kind: Literal["ramp"] = "ramp"
    start: float = Field(default=0.1, gt=0)
    end: float = Field(default=1.0, gt=0)
    over_s: float = Field(default=60.0, gt=0)

    def multiplier(self, elapsed_s: float) -> float:
        return self.start + (self.end - self.start) * min(1.0, elapsed_s / self.over_s)

    def peak(self) -> float:
        return max(self.start, self.end)


class Step(_Profile):
    """Multiplier `levels[i]` from `every_s * i` seconds on."""

    kind: Literal["step"] = "step"
    levels: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0], min_length=1)
    every_s: float = Field(default=30.0, gt=0)

    def multiplier(self, elapsed_s: float) -> float:
        return self.levels[min(len(self.levels) - 1, int(elapsed_s // self.every_s))]

    def peak(self) -> float:
        return max(self.levels)


class Burst(_Profile):
    """Nominal rate, with `factor` times the rate for `burst_s` seconds every `period_s` seconds."""

    kind: Literal["burst"] = "burst"
    factor: float = Field(default=5.0, gt=0)
    burst_s: float = Field(default=5.0, gt=0)
    period_s: float = Field(default=30.0, gt=0)

    def multiplier(self, elapsed_s: float) -> float:
        return self.factor if elapsed_s % self.period_s < self.burst_s else 1.0

    def peak(self) -> float:
        return max(self.factor, 1.0)


RateProfile = Annotated[Constant | Ramp | Step | Burst, Field(discriminator="kind")]


class Schedule:
    """Which device is due next. Devices start spread over one interval, then follow their own clocks."""

    def __init__(self, devices: list[Device], start: float, profile: Constant | Ramp | Step | Burst) -> None:
        self.start = start
        self.profile = profile
        self.devices = devices
        self._heap = [(start + d.fault_rng.uniform(0, d.group.interval_s), i) for i, d in enumerate(devices)]
        heapq.heapify(self._heap)

    def next_due(self) -> float:
        return self._heap[0][0]

    def pop_due(self, now: float) -> list[tuple[float, Device]]:
        """Every (due time, device) whose time has come, rescheduling each for its next report."""
        due: list[tuple[float, Device]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, index = heapq.heappop(heap)
            device = self.devices[index]
            due.append((at, device))
            multiplier = self.profile.multiplier(at - self.start)
            heapq.heappush(heap, (at + device.next_interval(multiplier), index))
        return due
