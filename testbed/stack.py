"""A deployed pipeline: a backend plus infra/ applied to it, and clients pointed at it."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from testbed.backends import Backend
from testbed.build import build
from testbed.outputs import StackOutputs
from testbed.paths import LAMBDA_ZIP
from testbed.terraform import Terraform

logger = logging.getLogger(__name__)


@dataclass
class Stack:
    backend: Backend
    # Terraform variables on top of the backend's (tests shorten timeouts, for instance).
    variables: dict[str, Any] = field(default_factory=dict)
    # How messages get from the broker into the pipeline locally: direct or sqs (see README).
    ingress: str = field(default_factory=lambda: os.environ.get("INGRESS", "direct"))

    @cached_property
    def terraform(self) -> Terraform:
        return Terraform(
            work_dir=self.backend.state_dir / "terraform",
            variables={**self.backend.terraform_variables(LAMBDA_ZIP), **self.variables},
            env=self.backend.client_env(),
        )

    def up(self) -> StackOutputs:
        """Start the backend, build the bundle, apply infra/, start the ingress; idempotent."""
        self.backend.start()
        build()
        self.terraform.apply()
        outputs_file = self.backend.state_dir / "outputs.json"
        outputs_file.write_text(self.terraform.outputs_json())
        self.backend.start_ingress(outputs_file, self.ingress)
        return self.outputs()

    def down(self) -> None:
        self.backend.stop()

    def clean(self) -> None:
        """Remove all local state of this backend (it must be stopped)."""
        self.backend.stop()
        shutil.rmtree(self.backend.state_dir, ignore_errors=True)

    def outputs(self) -> StackOutputs:
        return self.terraform.outputs()

    def client(self, service: str) -> Any:
        return self.backend.client(service)
