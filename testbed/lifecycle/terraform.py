"""Run Terraform (or OpenTofu) on infra/ with the project's own CLI config and state location."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from testbed.exceptions import TestbedError
from testbed.paths import INFRA_DIR, STATE_ROOT
from toolkit.settings import SETTINGS, SettingError

logger = logging.getLogger(__name__)

AWS_PROVIDER = "hashicorp/aws"
# Machines of this kind ship the provider in a filesystem mirror; elsewhere the registry is used.
MIRROR_GLOBS = ("/*/registry.terraform.io", "/*/*/registry.terraform.io")
# An emulator's queue URL (the aws_sqs_queue id) names the emulator's own host and port.
EMULATOR_HOSTS = frozenset({"127.0.0.1", "localhost"})


# Resources whose id is a queue's URL, and the attributes that hold that URL.
QUEUE_URL_TYPES = ("aws_sqs_queue", "aws_sqs_queue_policy")
QUEUE_URL_ATTRIBUTES = ("id", "url", "queue_url")

# How long one Terraform command may take before it is interrupted: an apply on AWS takes minutes,
# on an emulator one; an emulator that stops answering a call would otherwise hold it for ever
# (the provider's HTTP client sets no response timeout).
TIMEOUT_VARIABLE = "TESTBED_TERRAFORM_TIMEOUT_S"
# After the interrupt, Terraform gets this long to write its state before it is killed.
INTERRUPT_GRACE_S = 30.0
AWS_TIMEOUT_S = 3600.0


# Terraform's progress lines, in order: a start, `Still ...` while it lasts, a completion.
START_RE = re.compile(r"^(?P<address>\S+): (?P<doing>Creating|Modifying|Destroying|Reading)\.\.\.")
STILL_RE = re.compile(r"^(?P<address>\S+): Still (?P<doing>\w+)\.\.\. \[(?P<elapsed>[^\]]+) elapsed\]")
DONE_RE = re.compile(r"^(?P<address>\S+): (?:Creation|Modifications|Destruction|Read) complete")


def still_waiting(output: str) -> str:
    """What a stopped command was still waiting on, read from its progress lines in order (a
    replaced resource is destroyed, then created): the first line of the error is often all a CI
    summary shows."""
    pending: dict[str, str] = {}
    for line in output.splitlines():
        if started := START_RE.match(line):
            pending[started["address"]] = f"{started['address']} ({started['doing'].lower()})"
        elif still := STILL_RE.match(line):
            pending[still["address"]] = f"{still['address']} ({still['doing']}, {still['elapsed']})"
        elif done := DONE_RE.match(line):
            pending.pop(done["address"], None)
    return f"still waiting on {', '.join(pending.values())}" if pending else "with no resource in progress"


def command_timeout(on_emulator: bool = True) -> float:
    """The per-command limit: TESTBED_TERRAFORM_TIMEOUT_S where set; else its default on an emulator,
    and an hour on AWS (where an apply takes minutes and a resource can take tens of them)."""
    if not on_emulator and SETTINGS[TIMEOUT_VARIABLE].raw() is None:
        return AWS_TIMEOUT_S
    try:
        return SETTINGS[TIMEOUT_VARIABLE].seconds()
    except SettingError as exc:
        raise TerraformError(f"{exc} (default {SETTINGS[TIMEOUT_VARIABLE].default})") from None


def _finish(proc: subprocess.Popen[str]) -> tuple[str | None, str | None]:
    """Wait up to the grace period for an interrupted Terraform to exit; kill it past that."""
    try:
        return proc.communicate(timeout=INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def _moved_urls(state: dict[str, Any], endpoint_url: str) -> Iterator[tuple[str, dict[str, Any], dict[str, str]]]:
    """(address, attributes, the URL attributes rewritten to `endpoint_url`) of each queue-URL
    resource instance in `state` whose id names an emulator on another port."""
    endpoint = urlsplit(endpoint_url)
    for resource in state.get("resources", []):
        if resource.get("mode") != "managed" or resource.get("type") not in QUEUE_URL_TYPES:
            continue
        prefix = f"{resource['module']}." if resource.get("module") else ""
        for instance in resource.get("instances", []):
            attributes = instance["attributes"]
            url = urlsplit(attributes["id"])
            if url.hostname not in EMULATOR_HOSTS or url.port == endpoint.port:
                continue
            key = instance.get("index_key")
            index = "" if key is None else f"[{json.dumps(key)}]"
            rewritten = {
                name: urlsplit(attributes[name])._replace(netloc=endpoint.netloc).geturl()
                for name in QUEUE_URL_ATTRIBUTES
                if isinstance(attributes.get(name), str) and attributes[name]
            }
            yield f"{prefix}{resource['type']}.{resource['name']}{index}", attributes, rewritten


class TerraformError(TestbedError):
    """A Terraform command failed; the message carries its output."""


class TerraformTimeout(TerraformError):
    """A Terraform command ran past its limit and was stopped (an endpoint that stopped answering)."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command  # init, apply, ...


def terraform_binary() -> str:
    """`$TERRAFORM`, else terraform, else tofu."""
    for candidate in (SETTINGS["TERRAFORM"].raw(), "terraform", "tofu"):
        if candidate and shutil.which(candidate):
            return candidate
    raise TerraformError("neither terraform nor tofu is on PATH (set TERRAFORM to the binary)")


def find_mirror() -> Path | None:
    """The folder that holds `registry.terraform.io/hashicorp/aws`, if this machine has one."""
    override = SETTINGS["TESTBED_TF_MIRROR"].raw()
    candidates = [Path(override) / "registry.terraform.io"] if override else []
    candidates += [Path(p) for pattern in MIRROR_GLOBS for p in sorted(glob.glob(pattern))]
    for registry in candidates:
        if (registry / AWS_PROVIDER).is_dir():
            return registry.parent
    return None


def _link_mirror(source: Path, local: Path) -> None:
    """Mirror `source` (a registry.terraform.io folder) under both registry host names in `local`.

    Terraform does not walk into symlinked folders, so the tree is recreated with real folders
    and only the files are links. Nothing is ever written into `source`.
    """
    for host in ("registry.terraform.io", "registry.opentofu.org"):
        for entry in source.rglob("*"):
            target = local / host / entry.relative_to(source)
            if entry.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileExistsError):  # linked by a stack starting beside this one
                    target.symlink_to(entry)


def write_cli_config(state_root: Path = STATE_ROOT) -> Path:
    """Write the CLI config: the mirror for the aws provider where it exists, the registry elsewhere.

    OpenTofu looks the provider up as registry.opentofu.org/hashicorp/aws, so the mirror is also
    exposed under that host name.
    """
    state_root.mkdir(parents=True, exist_ok=True)
    config = state_root / "terraformrc"
    mirror = find_mirror()
    if mirror is None:
        text = "provider_installation {\n  direct {}\n}\n"
    else:
        local = state_root / "provider-mirror"
        _link_mirror(mirror / "registry.terraform.io", local)
        hosts = ", ".join(f'"{h}/{AWS_PROVIDER}"' for h in ("registry.terraform.io", "registry.opentofu.org"))
        text = (
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = "{local}"\n    include = [{hosts}]\n  }}\n'
            f"  direct {{\n    exclude = [{hosts}]\n  }}\n"
            "}\n"
        )
    if not config.exists() or config.read_text() != text:
        # renamed into place: a Terraform started by a stack beside this one never reads half a file
        staged = config.with_name(f".{config.name}.{os.getpid()}")
        staged.write_text(text)
        staged.replace(config)
    return config


class Terraform:
    """One stack: infra/ applied with a given state file, data dir, variables and environment."""

    def __init__(
        self,
        work_dir: Path,
        variables: Mapping[str, Any],
        env: Mapping[str, str],
        infra_dir: Path = INFRA_DIR,
        backend_config: Sequence[str] | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.infra_dir = infra_dir
        self.state_path = work_dir / "terraform.tfstate"
        # `-backend-config` values: a local state file by default, the user's S3 settings on AWS
        self.backend_config = list(backend_config) if backend_config else [f"path={self.state_path}"]
        self.var_file = work_dir / "terraform.tfvars.json"
        self.variables = dict(variables)
        self.env = {
            **os.environ,
            **env,
            "TF_CLI_CONFIG_FILE": str(write_cli_config()),
            "TF_DATA_DIR": str(work_dir / ".terraform"),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
        }
        self.binary = terraform_binary()

    @property
    def log_file(self) -> Path:
        """Where apply's and destroy's output goes, unless the CLI runs with -v (then it streams)."""
        return self.work_dir / "terraform.log"

    def run(
        self, *args: str, capture: bool = False, ok_codes: tuple[int, ...] = (0,)
    ) -> subprocess.CompletedProcess[str]:
        """Run a command, bounded by `command_timeout()`; output the caller does not parse goes to
        `log_file` behind one log line."""
        cmd = [self.binary, f"-chdir={self.infra_dir}", *args]
        logger.debug("running %s", " ".join(cmd))
        if capture or logger.isEnabledFor(logging.DEBUG):
            proc = self._bounded(cmd, subprocess.PIPE if capture else None)
            detail = (proc.stderr or "") + (proc.stdout or "") if capture else "see the output above"
        else:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            logger.info("terraform %s ... (output: %s; -v streams it)", args[0], self.log_file)
            with open(self.log_file, "a") as log:
                log.write(f"\n$ {' '.join(cmd)}\n")
                log.flush()
                proc = self._bounded(cmd, log, log.tell())
            detail = f"the end of {self.log_file}:\n{self.log_file.read_text()[-4000:]}"
        if proc.returncode not in ok_codes:
            raise TerraformError(f"`{' '.join(cmd[:3])}` failed (exit {proc.returncode}): {detail[-4000:]}")
        return proc

    def _bounded(self, cmd: list[str], out: Any, log_from: int = 0) -> subprocess.CompletedProcess[str]:
        """Run `cmd` to its end or to the timeout; past it, interrupt it, give it a grace period to
        write its state, kill it then, and raise naming what it was still doing. Ctrl-C reaches
        Terraform from the terminal too: it gets the same grace period before it is killed."""
        limit = command_timeout(on_emulator=self.variables.get("emulator", True) is not False)
        err = out if out in (None, subprocess.PIPE) else subprocess.STDOUT
        proc = subprocess.Popen(cmd, env=self.env, text=True, stdout=out, stderr=err)
        try:
            try:
                stdout, stderr = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                late_out, late_err = _finish(proc)
                said = (
                    (late_err or "") + (late_out or "")
                    if out is subprocess.PIPE
                    else self._log_since(log_from)
                    if out is not None
                    else ""
                )
                waiting = still_waiting(said) if out is not None else "(its progress is in the output above)"
                raise TerraformTimeout(
                    f"`{' '.join(cmd[:3])}` ran past {limit:.0f} s and was stopped, {waiting} (the emulator or AWS"
                    f" stopped answering, or raise {TIMEOUT_VARIABLE}); what it said last:\n{said[-4000:]}",
                    command=cmd[2],
                ) from None
        except KeyboardInterrupt:
            _finish(proc)  # the terminal's SIGINT reached Terraform: let it write its state
            raise
        finally:
            if proc.poll() is None:  # a test's timeout, a second Ctrl-C: nothing left running on its own
                proc.kill()
                proc.wait()
        return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)

    def _log_since(self, offset: int) -> str:
        """What this command wrote to the log (not what earlier ones did)."""
        if not self.log_file.exists():
            return "(no output)"
        with open(self.log_file, errors="replace") as log:
            log.seek(offset)
            return log.read()

    def init(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.var_file.write_text(json.dumps(self.variables, indent=2, sort_keys=True) + "\n")
        settings = [f"-backend-config={value}" for value in self.backend_config]
        self.run("init", "-input=false", "-no-color", "-reconfigure", *settings, capture=True)

    def state(self) -> dict[str, Any]:
        """The stack's Terraform state as it stands ({} before the first apply)."""
        if self.state_path.exists():
            return dict(json.loads(self.state_path.read_text()))
        if self.backend_config == [f"path={self.state_path}"]:
            return {}
        self.init()  # a remote backend (S3 on AWS)
        pulled = self.run("state", "pull", capture=True).stdout.strip()
        return dict(json.loads(pulled)) if pulled else {}

    def drop_history(self) -> list[Path]:
        """Remove the local files that keep what earlier applies wrote (the state's backup, the log):
        after a key left the state, they are where it still lies."""
        removed = [
            path for path in (self.state_path.with_name("terraform.tfstate.backup"), self.log_file) if path.exists()
        ]
        for path in removed:
            path.unlink()
        return removed

    def apply(self) -> None:
        self.init()
        self.run("apply", "-input=false", "-auto-approve", "-no-color", f"-var-file={self.var_file}")

    def moved_queues(self, endpoint_url: str) -> dict[str, str]:
        """Address -> the URL on `endpoint_url`, for each queue and queue policy whose id names an
        emulator on another port (a queue on AWS names AWS, and is never moved)."""
        if not self.state_path.exists():
            return {}
        state = json.loads(self.state_path.read_text())
        return {address: urls["id"] for address, _, urls in _moved_urls(state, endpoint_url)}

    def rehome_queues(self, endpoint_url: str) -> list[str]:
        """Point each queue and queue policy whose URL names the emulator's former port at the port it
        listens on now, in Terraform's state, so the apply that follows updates the outputs and the IoT
        rule's action instead of replacing the policies (the taps would go unprotected meanwhile); the
        queues and their messages stay as they are, and that apply's refresh reads each at its new URL."""
        moved = self.moved_queues(endpoint_url)
        if not moved:
            return []
        self.init()
        state = json.loads(self.run("state", "pull", capture=True).stdout)
        for _, attributes, urls in _moved_urls(state, endpoint_url):
            attributes.update(urls)
        state["serial"] += 1
        staged = self.work_dir / "rehomed.tfstate"
        staged.write_text(json.dumps(state, indent=2))
        try:
            self.run("state", "push", str(staged), capture=True)
        finally:
            staged.unlink()
        for address, url in moved.items():
            logger.info("%s now at %s", address, url)
        return list(moved)

    def plan_changes(self) -> str | None:
        """None if a plan shows no changes, else the plan text."""
        proc = self.run(
            "plan",
            "-input=false",
            "-no-color",
            "-detailed-exitcode",
            f"-var-file={self.var_file}",
            capture=True,
            ok_codes=(0, 2),
        )
        return None if proc.returncode == 0 else proc.stdout

    def changed_resources(self) -> dict[str, list[str]]:
        """Address -> planned actions of every resource a new apply would touch."""
        plan_file = self.work_dir / "check.tfplan"
        self.run(
            "plan",
            "-input=false",
            "-no-color",
            "-refresh=true",
            f"-out={plan_file}",
            f"-var-file={self.var_file}",
            capture=True,
        )
        shown = json.loads(self.run("show", "-json", str(plan_file), capture=True).stdout)
        plan_file.unlink()
        return {
            change["address"]: change["change"]["actions"]
            for change in shown.get("resource_changes", [])
            if change["change"]["actions"] not in (["no-op"], ["read"])
        }

    def destroy(self) -> None:
        self.init()
        self.run("destroy", "-input=false", "-auto-approve", "-no-color", f"-var-file={self.var_file}")

    def outputs_json(self) -> str:
        """`terraform output -json` of this stack, as text."""
        return self.run("output", "-json", "-no-color", capture=True).stdout
