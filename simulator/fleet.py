"""The fleet file (YAML): device types and counts, timing, firmware, sites, faults.

Parsed into pydantic models so an invalid file fails with the field's path and allowed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator.exceptions import SimulatorError
from telemetry.schema import DEVICE_TYPES

DeviceTypeName = Literal["environmental", "vibration", "power_meter", "cold_chain"]
MalformedKind = Literal["invalid_json", "wrong_type", "missing_field", "oversized"]
MALFORMED_KINDS: tuple[MalformedKind, ...] = ("invalid_json", "wrong_type", "missing_field", "oversized")
MAX_DEVICES = 100_000


class FleetError(SimulatorError):
    """The fleet file is missing or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceGroup(_Strict):
    """`count` devices of one type."""

    type: DeviceTypeName
    count: int = Field(ge=1, le=MAX_DEVICES)
    interval_s: float = Field(default=1.0, gt=0, le=86_400)
    jitter: float = Field(default=0.1, ge=0, le=1, description="fraction of the interval")
    firmware: list[str] = Field(default_factory=lambda: ["1.0.0"], min_length=1)
    sensors: list[str] | None = Field(default=None, description="subset of the type's sensors; all by default")
    id_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$")

    @model_validator(mode="after")
    def _sensors_belong_to_type(self) -> DeviceGroup:
        allowed = DEVICE_TYPES[self.type].sensors
        unknown = [s for s in self.sensors or () if s not in allowed]
        if unknown:
            raise ValueError(f"sensors {unknown} are not sensors of {self.type}; allowed: {list(allowed)}")
        return self


class ProbabilityFault(_Strict):
    probability: float = Field(default=0.0, ge=0, le=1, description="per message")


class SpikeFault(ProbabilityFault):
    magnitude: float = Field(default=8.0, gt=0, description="in units of the channel's noise")


class StuckFault(ProbabilityFault):
    duration_s: float = Field(default=60.0, gt=0)


class DropoutFault(ProbabilityFault):
    duration_s: float = Field(default=30.0, gt=0)
    flush_backlog: bool = True


class OutOfOrderFault(ProbabilityFault):
    delay_messages: int = Field(default=3, ge=1, le=100)


class ClockFault(_Strict):
    device_fraction: float = Field(default=0.0, ge=0, le=1)
    offset_s: float = Field(default=120.0, description="largest initial offset, either sign")
    drift_ppm: float = Field(default=0.0, ge=0, le=100_000)


class MalformedFault(ProbabilityFault):
    kinds: list[MalformedKind] = Field(default_factory=lambda: list(MALFORMED_KINDS), min_length=1)


class Faults(_Strict):
    spike: SpikeFault = SpikeFault()
    stuck: StuckFault = StuckFault()
    dropout: DropoutFault = DropoutFault()
    duplicate: ProbabilityFault = ProbabilityFault()
    out_of_order: OutOfOrderFault = OutOfOrderFault()
    clock: ClockFault = ClockFault()
    malformed: MalformedFault = MalformedFault()
    bad_signature: ProbabilityFault = ProbabilityFault()


class Fleet(_Strict):
    """A whole fleet: groups of devices, the sites they are spread over, and their faults."""

    name: str = "fleet"
    sites: list[str] = Field(default_factory=lambda: ["site-1"], min_length=1)
    devices: list[DeviceGroup] = Field(min_length=1)
    faults: Faults = Faults()

    @property
    def device_count(self) -> int:
        return sum(group.count for group in self.devices)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def parse_fleet(data: object, source: str = "fleet") -> Fleet:
    try:
        return Fleet.model_validate(data)
    except ValidationError as exc:
        raise FleetError(f"{source} is invalid:\n{_describe(exc)}") from None


# The folder holding the packages: a shipped fleet is named from there (simulator/fleets/smoke.yaml),
# whether in a checkout or installed from the wheel.
PACKAGES_ROOT = Path(__file__).resolve().parent.parent


def load_fleet(path: Path) -> Fleet:
    """Read and validate a fleet file (a relative path missing here may name a shipped fleet)."""
    if not path.is_absolute() and not path.exists() and (PACKAGES_ROOT / path).is_file():
        path = PACKAGES_ROOT / path
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise FleetError(f"cannot read fleet file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise FleetError(f"{path} is not valid YAML: {exc}") from None
    return parse_fleet(data, str(path))
