"""Every environment variable the command-line tools read (the testbed, the simulator, the rule
bridge's broker), declared once: its name, default, meaning, who reads it, and how its value is
checked. Code reads a variable through its `Setting` only (a test scans for reads elsewhere); the
README's table and each tool's `--help` epilog are generated from this table. The Lambda's own
environment is its contract and lives in `processor/config.py`.

`python -m toolkit.settings` prints the table as Markdown (the README's block between the
`env:start` and `env:end` markers is exactly that)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from toolkit.cli_help import MAX_PORT

# The ports AWS tooling and MQTT clients expect: LocalStack's edge port, MQTT's and MQTT over TLS's.
EMULATOR_PORT = 4566
MQTT_PORT = 1883
MQTT_TLS_PORT = 8883
FAULT_PROXY_PORT = 4599
QUOTA_GATE_PORT = 1884


class SettingError(ValueError):
    """An environment variable set to a value its setting refuses; the message names both."""


def _port(raw: str) -> str:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PORT:
        raise ValueError(f"give a port number from 1 to {MAX_PORT}")
    return raw


def _positive_seconds(raw: str) -> str:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ValueError("give a number of seconds above 0")
    return raw


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(raw: str) -> str:
        if raw.strip().lower() not in allowed:
            raise ValueError(f"choose one of {', '.join(allowed)}")
        return raw.strip().lower()

    return check


def _text(raw: str) -> str:
    return raw


@dataclass(frozen=True)
class Setting:
    """One environment variable: `value()` is what it holds (else the default), checked."""

    name: str
    default: str | None
    meaning: str
    read_by: str
    # how the default reads in the docs when the code computes it (a path, a search)
    shown_default: str | None = None
    check: Callable[[str], str] = _text

    def raw(self, env: Mapping[str, str] | None = None) -> str | None:
        """What the environment holds, None where it is unset or empty."""
        value = (os.environ if env is None else env).get(self.name)
        return value if value else None

    def value(self, env: Mapping[str, str] | None = None) -> str | None:
        """The value set (checked), else the default."""
        raw = self.raw(env)
        if raw is None:
            return self.default
        try:
            return self.check(raw)
        except ValueError as exc:
            raise SettingError(f"{self.name}={raw!r}: {exc}") from None

    def text(self, env: Mapping[str, str] | None = None) -> str:
        """`value()` for a setting with a default (or ""), as text."""
        return self.value(env) or ""

    def number(self, env: Mapping[str, str] | None = None) -> int:
        return int(self.text(env))

    def seconds(self, env: Mapping[str, str] | None = None) -> float:
        return float(self.text(env))

    def path(self, fallback: Path) -> Path:
        """The folder or file it names (else `fallback`), resolved."""
        return Path(self.raw() or fallback).resolve()

    def flag(self) -> bool:
        """Set to anything but 0."""
        return self.raw() not in (None, "0")


def _declare(*settings: Setting) -> dict[str, Setting]:
    table = {s.name: s for s in settings}
    assert len(table) == len(settings), "a setting declared twice"
    return table


SETTINGS = _declare(
    Setting(
        "BACKEND",
        "embedded",
        "the target: `embedded`, `external`, `localstack`, `ministack-docker` or `aws`",
        "testbed",
    ),
    Setting(
        "LOCALSTACK_RUNNER",
        "auto",
        "how `BACKEND=localstack` runs: `docker` (compose), `host` (a host process, no Docker) or `auto` "
        "(Docker where an engine answers)",
        "testbed (localstack), make",
        check=_choice("auto", "docker", "host"),
    ),
    Setting(
        "AWS_ENDPOINT_URL",
        None,
        "the running emulator `BACKEND=external` deploys to (never started or stopped)",
        "testbed (external)",
    ),
    Setting("INGRESS", "direct", "the local ingress: `direct`, `sqs` or `iot`", "testbed"),
    Setting(
        "MINISTACK_PORT",
        str(EMULATOR_PORT),
        "the emulator's port (a stack with state moves to a new one)",
        "testbed (embedded)",
        check=_port,
    ),
    Setting("LOCALSTACK_PORT", str(EMULATOR_PORT), "LocalStack's port", "testbed (localstack)", check=_port),
    Setting("MQTT_PORT", str(MQTT_PORT), "Mosquitto's port", "testbed (embedded, compose)", check=_port),
    Setting(
        "IOT_MQTT_PORT",
        str(MQTT_TLS_PORT),
        "ministack's IoT Core MQTT-over-TLS port",
        "testbed (embedded)",
        check=_port,
    ),
    Setting(
        "IAM",
        "off",
        "`enforce`: the emulator evaluates IAM policies (ministack's `AUTH=true`)",
        "testbed (embedded)",
    ),
    Setting(
        "API_FAULTS",
        "off",
        "`on`: every AWS client of the stack (the processor, the rule bridge, Terraform, the CLI) reaches the "
        "emulator through the API fault proxy, which takes LocalStack's Chaos API (`/_localstack/chaos/faults`); "
        "a scenario with `api` faults turns it on",
        "testbed (embedded, localstack)",
        check=_choice("off", "on"),
    ),
    Setting(
        "FAULT_PROXY_PORT",
        str(FAULT_PROXY_PORT),
        "the API fault proxy's port",
        "testbed (embedded, localstack)",
        check=_port,
    ),
    Setting(
        "AWS_QUOTAS",
        "off",
        "`on`: devices reach Mosquitto through the quota gate, which enforces AWS IoT Core's quotas before "
        "any PUBACK (100 publishes and 512 KiB a second per connection, 1 CONNECT a second per client id, "
        "128 KB payloads, 20,000 publishes a second per account); a scenario with `aws_quotas` turns it on",
        "testbed (embedded, localstack)",
        check=_choice("off", "on"),
    ),
    Setting(
        "QUOTA_GATE_PORT",
        str(QUOTA_GATE_PORT),
        "the quota gate's port (where devices connect with AWS_QUOTAS=on)",
        "testbed (embedded, localstack)",
        check=_port,
    ),
    Setting("MINISTACK_LOG_LEVEL", "WARNING", "the emulator's own log level", "testbed (embedded)"),
    Setting(
        "EMBEDDED_STATE_DIR",
        None,
        "the embedded stack's state folder",
        "testbed (embedded)",
        shown_default="`.testbed/embedded`",
    ),
    Setting(
        "EXTERNAL_STATE_DIR",
        None,
        "the external backend's state folder (broker, bridge, Terraform)",
        "testbed (external)",
        shown_default="`.testbed/external`",
    ),
    Setting(
        "COMPOSE_STATE_DIR",
        None,
        "a compose stack's state folder",
        "testbed (compose)",
        shown_default="`.testbed/<backend>`",
    ),
    Setting(
        "DRY_RUN",
        None,
        "print the docker commands instead of running them",
        "testbed (compose)",
        shown_default="unset",
    ),
    Setting(
        "DOCKER_HOST",
        None,
        "the Docker engine the compose backends and `doctor` ask",
        "testbed (compose), docker",
        shown_default="the default socket",
    ),
    Setting(
        "TESTBED_STATE_DIR", None, "the folder every backend's state goes under", "testbed", shown_default="`.testbed`"
    ),
    Setting(
        "TESTBED_INFRA_DIR",
        None,
        "the Terraform folder deployed (a stack of your own)",
        "testbed, the pytest plugin",
        shown_default="this project's `infra/`",
    ),
    Setting(
        "TESTBED_OUTPUTS",
        None,
        "your stack's output names for the contract's: `ours=theirs` pairs",
        "testbed, the pytest plugin",
    ),
    Setting(
        "TESTBED_DEVICE_TOPIC",
        None,
        "each device's topic: the local broker's ACL and the things' policy",
        "testbed, the pytest plugin",
        shown_default="`sensors/{device_id}/telemetry`",
    ),
    Setting("MINISTACK_VENV", None, "where ministack is installed", "testbed", shown_default="`.venv-ministack`"),
    Setting(
        "LOCALSTACK_VENV",
        None,
        "where LocalStack (and the project, for its plugins) is installed",
        "testbed (localstack, host)",
        shown_default="`.venv-localstack`",
    ),
    Setting(
        "LAMBDA_PYTHON_VENV",
        None,
        "the Lambda python3.12 runtime's venv (boto3)",
        "testbed (localstack, host)",
        shown_default="`.venv-lambda-python3.12`",
    ),
    Setting(
        "LOCALSTACK_STATE_DIR",
        None,
        "the LocalStack host process's state folder",
        "testbed (localstack, host)",
        shown_default="`.testbed/localstack-host`",
    ),
    Setting(
        "PYENV_ROOT",
        None,
        "where pyenv's versions are looked for (`PYTHON_3_13=/path/python3.13`, `PYTHON_3_12=...` name an "
        "interpreter instead)",
        "testbed (localstack, host), make",
        shown_default="`pyenv root`, else `~/.pyenv`",
    ),
    Setting("PYTHON_3_13", None, "a Python 3.13 interpreter for LocalStack's venv", "testbed (localstack, host), make"),
    Setting("PYTHON_3_12", None, "a Python 3.12 interpreter for the Lambda runtime's venv", "testbed, make"),
    Setting(
        "TERRAFORM", None, "the Terraform (or OpenTofu) binary", "testbed", shown_default="`terraform`, else `tofu`"
    ),
    Setting(
        "MOSQUITTO",
        None,
        "the Mosquitto broker binary",
        "testbed, the rule bridge's broker",
        shown_default="on `PATH`, else `/usr/sbin`, `/opt/homebrew/sbin`, `/usr/local/sbin`",
    ),
    Setting(
        "TESTBED_TF_MIRROR",
        None,
        "a local filesystem mirror of `registry.terraform.io`",
        "testbed",
        shown_default="found under `/`",
    ),
    Setting(
        "TESTBED_TERRAFORM_TIMEOUT_S",
        "600",
        "seconds one Terraform command may take before it is interrupted (an emulator that stopped answering), "
        "with what it still waited on",
        "testbed",
        check=_positive_seconds,
    ),
    Setting("ENV", "dev", "the stack's suffix on AWS", "testbed (aws)"),
    Setting("BACKEND_CONFIG", "backend.s3.hcl", "the S3 state backend file", "testbed (aws)"),
    Setting("AWS_REGION", None, "the region on AWS", "testbed (aws)", shown_default="`AWS_DEFAULT_REGION`"),
    Setting("AWS_DEFAULT_REGION", "us-east-1", "the region on AWS where `AWS_REGION` is unset", "testbed (aws)"),
    Setting("SIMULATOR_SIGNING_KEY", None, "the payload signing key of `bin/simulator run`", "simulator"),
    Setting(
        "PYTEST_XDIST_WORKER_COUNT",
        None,
        "how many workers run stacks at once (a compose backend takes one)",
        "the pytest plugin",
        shown_default="set by pytest-xdist",
    ),
    Setting("BIND_HOST", "127.0.0.1", "the address ministack binds", "the emulator launcher", "set by the testbed"),
    Setting("PERSIST_STATE", None, "`1`: ministack keeps its state", "the emulator launcher", "set by the testbed"),
    Setting(
        "MINISTACK_SNAPSHOT_MARKER",
        None,
        "the file ministack's launcher touches once a snapshot is written",
        "the emulator launcher",
        "set by the testbed",
    ),
)


def python_interpreter(version: str) -> Setting:
    """`PYTHON_<major>_<minor>`: the interpreter of a Python version, where a tool needs one (declared
    above for the versions the project's venvs use)."""
    name = f"PYTHON_{version.replace('.', '_')}"
    return SETTINGS.get(name) or Setting(name, None, f"a Python {version} interpreter", "testbed, make")


def check_all(read_by: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Every bad value among the settings a part reads, one line each (empty: all good)."""
    problems = []
    for setting in SETTINGS.values():
        if read_by in setting.read_by:
            try:
                setting.value(env)
            except SettingError as exc:
                problems.append(str(exc))
    return problems


def _default_cell(setting: Setting) -> str:
    if setting.shown_default is not None:
        return setting.shown_default
    return f"`{setting.default}`" if setting.default is not None else "none"


def markdown(settings: Iterable[Setting] | None = None) -> str:
    """The settings as the README's table."""
    rows = [
        f"| `{s.name}` | {s.read_by} | {_default_cell(s)} | {s.meaning} |"
        for s in (SETTINGS.values() if settings is None else settings)
    ]
    return "\n".join(["| variable | read by | default | what it sets |", "|---|---|---|---|", *rows]) + "\n"


def epilog(read_by: str) -> str:
    """The environment a tool reads, for its `--help`."""
    lines = [
        f"  {s.name:<28} {s.meaning.replace('`', '')} (default: {_default_cell(s).replace('`', '')})"
        for s in SETTINGS.values()
        if read_by in s.read_by
    ]
    return "environment:\n" + "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
