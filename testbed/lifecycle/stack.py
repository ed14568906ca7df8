"""A deployed pipeline: a backend plus its Terraform (infra/ or the user's own) applied to it, and
clients pointed at it."""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ingress.quotas.limits import IotQuotas
from ingress.rule import RuleError, parse_rule
from telemetry.outputs import OutputsError, StackOutputs
from testbed.lifecycle import iot_things
from testbed.lifecycle.backends import Backend
from testbed.lifecycle.build import build
from testbed.lifecycle.infra import InfraError, Infrastructure
from testbed.lifecycle.secrets import LeakedVersion, leaked_versions, make_private, remember, retire
from testbed.lifecycle.terraform import Terraform, TerraformTimeout
from testbed.paths import INFRA_DIR, LAMBDA_ZIP
from toolkit.settings import SETTINGS

logger = logging.getLogger(__name__)
# Environments warmed at least (the rule bridge's direct invocations run this many at once).
WARM_ENVIRONMENTS = 4


class EmulatorAborted(TerraformTimeout):
    """Terraform waited past its limit on an emulator of this project's, which was then stopped."""


@dataclass
class Stack:
    backend: Backend
    # Terraform variables on top of the backend's (tests shorten timeouts, for instance).
    variables: dict[str, Any] = field(default_factory=dict)
    # How messages get from the broker into the pipeline locally: direct or sqs (see README).
    ingress: str = field(default_factory=SETTINGS["INGRESS"].text)
    # The Terraform deployed: infra/, or the user's own (TESTBED_INFRA_DIR) with its outputs mapping.
    infra: Infrastructure = field(default_factory=Infrastructure.from_env)

    @cached_property
    def terraform(self) -> Terraform:
        work_dir = self.backend.state_dir / "terraform"
        infra_dir, backend_config = self.backend.terraform_setup(work_dir, self.infra.folder)
        return Terraform(
            work_dir=work_dir,
            variables=self.terraform_variables(),
            env=self.backend.client_env(),
            infra_dir=infra_dir,
            backend_config=backend_config,
        )

    @property
    def alert_journal(self) -> Path:
        """Every alert drained from this stack's alerts tap, so each run reads its own whoever drained them."""
        return self.backend.state_dir / "alerts.jsonl"

    @property
    def outputs_file(self) -> Path:
        """`terraform output -json` of the last apply: what the bridge and the compose services read."""
        return self.backend.state_dir / "outputs.json"

    def up(self) -> StackOutputs | None:
        """Start the backend, build the bundle, apply the Terraform, start the ingress; idempotent."""
        self.backend.check_ingress(self.ingress)
        make_private(self.backend.state_dir, self.backend.secret_files())
        self.backend.start()
        if self.backend.dry_run:
            folder = "infra" if self.infra.shipped else self.infra.folder
            print(f"terraform -chdir={folder} apply  # with variables {self.variables_text()}")
            self.backend.start_ingress(self.outputs_file, self.ingress)
            return None
        try:
            return self._deploy()
        except BaseException:
            self._say_what_still_runs()
            raise

    def _deploy(self) -> StackOutputs:
        """Apply the Terraform on a started backend, then start the ingress and check it delivers."""
        self.claim_state()
        if self.infra.shipped:  # a stack of the user's own packages its functions itself
            build()
        self.terraform.rehome_queues(self.backend.endpoint_url())
        # the shipped stack's key, held in the state by a stack deployed before it became write-only
        pending = self.backend.state_dir / "terraform" / "leaked-keys.json"
        leaked = remember(pending, leaked_versions(self.terraform.state()) if self.infra.shipped else [])
        try:
            self.terraform.apply()
        except TerraformTimeout as exc:
            # an emulator that still answers its health check is slow, not hung: left running
            if exc.command != "apply" or self.backend.healthy():
                raise
            log = self.backend.abort_emulator()
            if log is None:
                raise
            raise EmulatorAborted(
                f"{exc}\nThe emulator answered neither Terraform nor its health check and was stopped (SIGABRT): "
                f"what each of its threads was doing is at the end of {log}",
                command=exc.command,
            ) from None
        if leaked:
            self.retire_leaked_keys(leaked)
            pending.unlink()
        outputs = self.contract_outputs()
        self.outputs_file.write_text(json.dumps(outputs, indent=2, sort_keys=True) + "\n")
        self.backend.start_ingress(self.outputs_file, self.ingress)
        # what was just deployed survives an emulator crash
        self.backend.snapshot()
        make_private(self.backend.state_dir, self.backend.secret_files())  # the folders the servers made
        self.backend.verify_delivery()
        return StackOutputs.from_terraform(outputs)

    def _say_what_still_runs(self) -> None:
        """After an `up` that failed past the start: the servers are left up for a look (logs, a
        fix and another `up`), and named with the way to stop them."""
        if not self.backend.local_processes:
            return
        try:
            running = [c for c in self.backend.components() if c.running and c.pid is not None]
        except Exception:  # naming what runs must not hide why `up` failed
            return
        if running:
            logger.warning(
                "up failed; still running: %s (state in %s): `bin/testbed --backend %s down` stops them",
                ", ".join(f"{c.name} (pid {c.pid})" for c in running),
                self.backend.state_dir,
                self.backend.name,
            )

    def retire_leaked_keys(self, leaked: list[LeakedVersion]) -> None:
        """A stack deployed before the key was write-only held it in its state: the apply that just
        ran wrote a new key; the old one stops verifying and the local files that held it go."""
        retired = retire(self.client("secretsmanager"), leaked)
        removed = self.terraform.drop_history()
        logger.warning(
            "the device signing key was in Terraform's state (a stack deployed before write-only secrets): "
            "a new key was written, the old one no longer verifies (%s), and %s removed. A remote state's "
            "older versions (a versioned S3 bucket) still hold the old key: delete them (docs/security.md)",
            ", ".join(retired),
            ", ".join(str(p) for p in removed) or "no local copy was",
        )

    @property
    def infra_marker(self) -> Path:
        """Which Terraform folder the state in the work folder belongs to."""
        return self.backend.state_dir / "terraform" / "infra-folder"

    def claim_state(self) -> None:
        """One state holds one stack: applying (or destroying with) another folder over it would
        destroy the stack it holds, so that is refused, naming both folders."""
        folder = str(self.infra.folder.resolve())
        if self.infra_marker.exists():  # empty once the stack was destroyed
            recorded = self.infra_marker.read_text().strip() or folder
        elif self.infra_marker.parent.exists():  # a state from before folders were recorded: infra/'s
            recorded = str(INFRA_DIR.resolve())
        else:
            recorded = folder
        if recorded != folder:
            raise InfraError(
                f"the state in {self.infra_marker.parent} holds the stack deployed from {recorded}; applying "
                f"{folder} over it would destroy that stack. Destroy it first (TESTBED_INFRA_DIR={recorded} "
                "make destroy), or give this stack a state folder of its own (TESTBED_STATE_DIR=...)"
            )
        self.infra_marker.parent.mkdir(parents=True, exist_ok=True)
        self.infra_marker.write_text(folder + "\n")

    def contract_outputs(self) -> dict[str, Any]:
        """`terraform output -json` under the contract's names (what the bridge and the services read);
        a stack that lacks an output the ingress needs is named here, before anything runs on it."""
        try:
            outputs = self.infra.outputs(json.loads(self.terraform.outputs_json()), self.backend.region)
            sql = StackOutputs.from_terraform(outputs).iot_rule_sql
        except OutputsError as exc:
            raise InfraError(f"the stack in {self.infra.folder}: {exc}") from None
        try:
            rule = parse_rule(sql)
        except RuleError:  # SQL the bridge does not evaluate: it names the part when it starts
            return outputs
        if not rule.matches(self.backend.topic.for_device("device-1")):
            raise InfraError(
                f"devices publish on {self.backend.device_topic}, which the topic rule's FROM "
                f"'{rule.topic_filter}' does not match: set TESTBED_DEVICE_TOPIC to the devices' topic"
            )
        return outputs

    def use_api_faults(self, on: bool = True) -> None:
        """Every AWS client of the stack through the API fault proxy, or none; the next `up` deploys it
        (the processor's endpoint is a Terraform variable, and Terraform's own endpoint changes)."""
        self.backend.use_api_faults(on)
        self.__dict__.pop("terraform", None)

    def use_aws_quotas(self, quotas: IotQuotas | None) -> None:
        """Devices through the quota gate with these quotas, or straight to the broker; `up` starts it."""
        self.backend.use_aws_quotas(quotas)

    def use_ingress(self, mode: str) -> None:
        """Route devices through `mode` (a benchmark or a test compares them); `self.ingress` goes back."""
        self.backend.start_ingress(self.outputs_file, mode)

    def terraform_variables(self) -> dict[str, Any]:
        """The backend's variables and this stack's, as its Terraform folder takes them."""
        return self.infra.variables(self.backend.terraform_variables(LAMBDA_ZIP), self.variables)

    def variables_text(self) -> str:
        return json.dumps(self.terraform_variables(), sort_keys=True)

    def down(self) -> None:
        self.backend.stop()
        if self.backend.state_dir.exists():  # what the emulator saved as it stopped
            make_private(self.backend.state_dir, self.backend.secret_files())

    def clean(self) -> None:
        """Remove all local state of this backend (it must be stopped)."""
        self.backend.stop()
        shutil.rmtree(self.backend.state_dir, ignore_errors=True)

    def destroy(self) -> None:
        """Remove every provisioned device (things, certificates, policies), then all that Terraform deployed."""
        self.backend.start()
        self.claim_state()
        iot = self.client("iot")
        for manifest in sorted(self.backend.state_dir.glob(f"things/*/{iot_things.MANIFEST}")):
            removed = iot_things.deprovision(iot, manifest.parent)
            logger.info("removed %d thing(s) listed in %s", removed, manifest)
        self.terraform.destroy()
        self.infra_marker.write_text("")

    def outputs(self) -> StackOutputs:
        return StackOutputs.from_terraform(self.contract_outputs())

    def output(self, name: str) -> Any:
        """One output of the deployed stack by its own name (a stack of the user's has outputs the
        contract does not name: its table, its bucket)."""
        raw = json.loads(self.terraform.outputs_json())
        if name not in raw:
            raise InfraError(
                f"the stack in {self.infra.folder} has no output {name!r}; it has: {', '.join(sorted(raw))}"
            )
        return raw[name]["value"]

    def client(self, service: str) -> Any:
        return self.backend.client(service)

    def warm_processor(self) -> int:
        """Start the processor's execution environments before anything is measured: an empty batch
        to each of as many as may run at once (the queue mapping's maximum concurrency), together, so
        a run's first messages meet warm functions, as on a stack that has been working. How many."""
        function = self.outputs().processor_function_name
        client = self.client("lambda")
        mappings = client.list_event_source_mappings(FunctionName=function).get("EventSourceMappings", [])
        wanted = max(
            [WARM_ENVIRONMENTS, *((m.get("ScalingConfig") or {}).get("MaximumConcurrency") or 0 for m in mappings)]
        )
        started = time.monotonic()
        with ThreadPoolExecutor(wanted) as pool:
            answers = list(
                pool.map(lambda _: client.invoke(FunctionName=function, Payload=b'{"Records": []}'), range(wanted))
            )
        failed = [a.get("FunctionError") for a in answers if a.get("FunctionError")]
        if failed:  # a function of the user's own may not take an empty batch: the run goes on, cold
            logger.warning("the processor failed an empty batch while warming up (%s): make logs says why", failed[0])
        logger.info("%d processor environment(s) warm in %.1f s", wanted, time.monotonic() - started)
        return wanted

    def signing_key(self) -> bytes:
        """The current device signing key, from the deployed secret."""
        secret = self.client("secretsmanager").get_secret_value(SecretId=self.outputs().need("signing_secret_arn"))
        return str(secret["SecretString"]).encode()
