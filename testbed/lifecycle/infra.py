"""Which Terraform the testbed deploys: this project's infra/ by default, or a stack of the user's own
(`TESTBED_INFRA_DIR`) whose outputs reach the tools through a mapping (`TESTBED_OUTPUTS`)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telemetry.outputs import OutputsError, parse_output_names, rename_outputs
from testbed.exceptions import TestbedError
from testbed.paths import INFRA_DIR
from toolkit.settings import SETTINGS

# What the testbed sets on the stacks it deploys; a stack of the user's own gets each it declares.
TESTBED_VARIABLES = frozenset({"emulator", "enable_iot_rule", "region", "environment_suffix"})
logger = logging.getLogger(__name__)
VARIABLE_BLOCK = re.compile(r'^\s*variable\s+"([^"]+)"', re.MULTILINE)


class InfraError(TestbedError):
    """The Terraform folder or its outputs mapping cannot be used (the message says why)."""


@dataclass(frozen=True)
class Infrastructure:
    folder: Path = INFRA_DIR
    # this contract's output name -> the stack's own (empty: the stack uses the contract's names)
    output_names: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.folder.is_dir():
            raise InfraError(f"the Terraform folder {self.folder} (TESTBED_INFRA_DIR) is not a folder")
        if not any(self.folder.glob("*.tf")) and not any(self.folder.glob("*.tf.json")):
            raise InfraError(f"the Terraform folder {self.folder} (TESTBED_INFRA_DIR) holds no .tf file")

    @classmethod
    def configured(cls, folder: str | None, outputs: str | None) -> Infrastructure:
        """From the settings' text: a folder (relative to the working directory) and `ours=theirs` pairs."""
        try:
            names = parse_output_names(outputs or "")
        except OutputsError as exc:
            raise InfraError(f"TESTBED_OUTPUTS: {exc}") from None
        return cls(Path(folder).resolve() if folder else INFRA_DIR, names)

    @classmethod
    def from_env(cls) -> Infrastructure:
        return cls.configured(SETTINGS["TESTBED_INFRA_DIR"].raw(), SETTINGS["TESTBED_OUTPUTS"].raw())

    @property
    def shipped(self) -> bool:
        """This project's own pipeline (whose Lambda bundle the testbed builds)."""
        return self.folder.resolve() == INFRA_DIR.resolve()

    def declared_variables(self) -> set[str]:
        """The input variables the root module declares (in .tf and .tf.json files)."""
        names = {m[1] for path in self.folder.glob("*.tf") for m in VARIABLE_BLOCK.finditer(path.read_text())}
        for path in self.folder.glob("*.tf.json"):
            try:
                names |= set(json.loads(path.read_text()).get("variable", {}))
            except (ValueError, AttributeError) as exc:
                raise InfraError(f"{path} is not a Terraform JSON file: {exc}") from None
        return names

    def variables(self, testbed: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
        """The user's variables over the testbed's; of those the testbed sets (TESTBED_VARIABLES), a
        stack of the user's own gets only the ones it declares (Terraform warns of any other), and
        never this project's Lambda bundle (its own build makes its bundles)."""
        merged = {**testbed, **user}
        if self.shipped:
            return merged
        merged.pop("lambda_zip_path", None)
        declared = self.declared_variables()
        if "environment_suffix" in merged and "environment_suffix" not in declared:
            logger.warning(
                "%s declares no environment_suffix: stacks deployed to one emulator from it share resource names",
                self.folder,
            )
        return {name: value for name, value in merged.items() if name in declared or name not in TESTBED_VARIABLES}

    def outputs(self, raw: Mapping[str, Any], region: str) -> dict[str, Any]:
        """`terraform output -json` under the contract's names; the region is the backend's unless the stack says."""
        renamed = rename_outputs(raw, self.output_names)
        return {"region": {"value": region}, **renamed}
