"""Scenario files (YAML): which fleet, how long, at what rate, and what must hold for a pass."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ingress.quotas.limits import IotQuotas
from simulator.fleet import FleetError, load_fleet
from simulator.schedule import Constant, RateProfile
from testbed.exceptions import TestbedError
from testbed.runs.faults import FaultSpec

SCENARIO_DIR = Path(__file__).with_name("scenarios")
# what the devices of a scenario with AWS IoT's quotas wait for a PUBACK before they send again
DEFAULT_ACK_TIMEOUT_S = 1.0


class ScenarioError(TestbedError, ValueError):
    """The scenario is missing or invalid; the message names the field."""


class Expectations(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_lost: int = Field(default=0, ge=0)
    max_unexplained: int = Field(default=0, ge=0)
    max_p99_latency_ms: float | None = Field(default=None, gt=0)
    min_throughput_msg_s: float | None = Field(default=None, ge=0)
    alerts_ok: bool = True
    max_emulator_rss_mb: float | None = Field(default=None, gt=0)
    # A run in which messages never reached the broker must not pass unless the scenario says so.
    max_publish_failures: int = Field(default=0, ge=0)
    min_acked_ratio: float = Field(default=1.0, ge=0, le=1, description="acknowledged / (acknowledged + failed)")


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    fleet: Path = Field(description="fleet file, relative to the repository")
    seed: int = 1
    duration_s: float = Field(gt=0, le=86_400)
    profile: RateProfile = Field(default_factory=Constant)
    qos: int = Field(default=1, ge=0, le=1)
    workers: int = Field(default=1, ge=1, le=8)
    # publish to the topic rule's Basic Ingest topic ($aws/rules/<rule>/<topic>): no broker
    # subscription, and on AWS no messaging charge
    basic_ingest: bool = False
    drain_timeout_s: float = Field(default=120.0, gt=0)
    expectations: Expectations = Expectations()
    faults: tuple[FaultSpec, ...] = ()
    # AWS IoT Core's quotas at the local broker (`true`: AWS's defaults; or the quotas to change)
    aws_quotas: IotQuotas | None = None
    # QoS 1: resend a publish with no PUBACK after this long (with aws_quotas: DEFAULT_ACK_TIMEOUT_S)
    ack_timeout_s: float | None = Field(default=None, gt=0, le=600)

    @field_validator("aws_quotas", mode="before")
    @classmethod
    def _quotas_on_or_off(cls, value: object) -> object:
        if value is True:
            return {}
        return None if value is False else value

    @property
    def resend_after_s(self) -> float | None:
        """How long the devices wait for a PUBACK before they send again (None: only after a reconnect)."""
        if self.ack_timeout_s is not None:
            return self.ack_timeout_s
        return DEFAULT_ACK_TIMEOUT_S if self.aws_quotas is not None and self.qos else None

    @model_validator(mode="after")
    def _faults_within_the_run(self) -> Scenario:
        late = [f.label for f in self.faults if f.at_s >= self.duration_s]
        if late:
            raise ValueError(f"faults scheduled after the load ends ({self.duration_s:g} s): {', '.join(late)}")
        return self


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name (testbed/runs/scenarios/<name>.yaml) or a path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        shipped = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
        raise ScenarioError(f"no scenario {name_or_path!r}; shipped: {', '.join(shipped)}")
    try:
        scenario = Scenario.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"{path} is invalid: {details}") from None
    try:
        load_fleet(scenario.fleet)
    except FleetError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return scenario
