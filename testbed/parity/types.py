"""The rows of the parity report and what a probe needs from the running stack."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.run_config import MqttTarget
from telemetry.outputs import StackOutputs
from telemetry.topics import DeviceTopic


class Verdict(enum.Enum):
    SAME = "same"
    DIFFERS = "differs"
    # the probe could not run here (a resource the stack lacks, a call that failed): said, not guessed
    UNKNOWN = "not probed"


@dataclass(frozen=True)
class Row:
    """One AWS behaviour: what AWS does, what the probe saw this backend do, what that means."""

    feature: str
    aws: str
    backend: str
    verdict: Verdict
    consequence: str

    def as_dict(self) -> dict[str, str]:
        return {
            "feature": self.feature,
            "aws": self.aws,
            "backend": self.backend,
            "verdict": self.verdict.value,
            "consequence": self.consequence,
        }


@dataclass
class ProbeContext:
    """The running stack, as far as the probes touch it: clients, outputs, the device-facing broker."""

    client: Callable[[str], Any]
    outputs: StackOutputs
    ingress: str
    device_topic: DeviceTopic
    mqtt_target: Callable[[], MqttTarget]
    provision: Callable[[list[str]], None]
    release: Callable[[list[str]], None]
    iam_enforced: bool
    # every throwaway resource a probe creates carries this name, and is deleted by the same probe
    name: str
