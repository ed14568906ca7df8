"""docker-compose.yml and the Dockerfile, checked statically (these machines have no Docker engine)."""

from __future__ import annotations

import io
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from ingress.__main__ import build_parser as ingress_parser
from simulator.cli import KEY_ENV
from simulator.cli import build_parser as simulator_parser
from testbed import cli
from testbed.cli import common
from testbed.lifecycle.backends.compose import (
    COMPOSE_FILE,
    CONTAINER_BROKER_DIR,
    ComposeBackend,
    LocalStackBackend,
    MinistackDockerBackend,
)
from testbed.paths import MINISTACK_VENV, ROOT
from tests.contract.schemas import assert_valid_and_broken_copy_refused
from tests.docs import manual_text
from toolkit.settings import EMULATOR_PORT

DOCKERFILE = ROOT / "Dockerfile"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?]([^}]*))?\}")
# Variables a user may set for compose; everything else it interpolates comes from the backend.
USER_SETTINGS = {"LOCALSTACK_IMAGE", "LOCALSTACK_AUTH_TOKEN", "LOCALSTACK_DEBUG", "MINISTACK_LOG_LEVEL"}
# What the backend passes per command (INGRESS to the bridge; FLEET and DURATION to the simulator).
PER_COMMAND = {"INGRESS", "FLEET", "DURATION"}
AWS_SDK_SETTINGS = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
LOCALSTACK_SETTINGS = {"SERVICES", "LOCALSTACK_AUTH_TOKEN", "LAMBDA_DOCKER_NETWORK", "DEBUG"}


def document() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def services() -> dict[str, Any]:
    return dict(document()["services"])


def with_defaults(value: str) -> str:
    """A compose value as interpolated with every variable unset (its `${VAR:-default}`)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def test_the_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    broken = document()
    broken["services"]["bridge"]["helthcheck"] = broken["services"]["bridge"].pop("healthcheck")
    assert_valid_and_broken_copy_refused(COMPOSE_FILE, "vendor.compose-spec", broken, tmp_path)


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in services().items():
        repository, _, tag = with_defaults(service["image"]).rpartition(":")
        assert repository and tag and tag != "latest", (name, service["image"])


def test_the_projects_own_image_is_built_from_the_dockerfile_and_tagged_with_the_version() -> None:
    built = {name: s for name, s in services().items() if "build" in s}
    assert set(built) == {"bridge", "simulator"}
    for service in built.values():
        assert service["build"] == "."
        assert service["image"] == f"iot-pipeline-testbed:{PROJECT['version']}"


def test_localstack_is_the_last_free_tag_and_the_token_comes_from_the_environment() -> None:
    localstack = services()["localstack"]
    assert localstack["image"] == "${LOCALSTACK_IMAGE:-localstack/localstack:4.14.0}"
    assert localstack["environment"]["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}", "never written down"
    assert "/var/run/docker.sock:/var/run/docker.sock" in localstack["volumes"], "its Lambda runs in containers"
    assert localstack["environment"]["LAMBDA_DOCKER_NETWORK"] == document()["networks"]["default"]["name"]
    assert localstack["healthcheck"]["test"][-1].endswith("/_localstack/health")


def test_ministack_runs_the_same_version_as_the_embedded_backend() -> None:
    makefile = (ROOT / "Makefile").read_text()
    version = re.search(r"^MINISTACK_VERSION := (\S+)$", makefile, re.M)
    assert version and services()["ministack"]["image"] == f"ministackorg/ministack:{version.group(1)}"


def test_ports_bind_to_loopback_only() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in services().items():
        if service.get("restart") == "no":
            assert service["profiles"] == ["simulator"], f"{name}: only the simulator is a one-off job"
            continue
        assert service["healthcheck"]["test"], name


def test_the_emulators_answer_to_one_name_that_the_bridge_uses() -> None:
    for emulator in ("localstack", "ministack"):
        assert services()[emulator]["networks"]["default"]["aliases"] == ["emulator"]
        assert services()[emulator]["profiles"] == [emulator]
    assert services()["bridge"]["environment"]["AWS_ENDPOINT_URL"] == f"http://emulator:{EMULATOR_PORT}"
    for service in ("mosquitto", "bridge"):
        assert sorted(services()[service]["profiles"]) == ["localstack", "ministack"]


def test_the_environment_of_the_projects_services_is_what_their_code_reads() -> None:
    for name in ("bridge", "simulator"):
        package = ROOT / ("ingress" if name == "bridge" else "simulator")
        source = "\n".join(p.read_text() for p in package.rglob("*.py"))
        for variable in services()[name].get("environment", {}):
            assert variable in AWS_SDK_SETTINGS or f'"{variable}"' in source, (name, variable)
    assert list(services()["simulator"]["environment"]) == [KEY_ENV]
    assert services()["simulator"]["environment"][KEY_ENV] is None, "passed through from the caller, not written"


def test_the_environment_of_ministack_is_what_ministack_reads() -> None:
    package = next((MINISTACK_VENV / "lib").glob("python3*/site-packages/ministack"), None)
    if package is None:
        pytest.skip(f"ministack is not installed in {MINISTACK_VENV} (make venvs)")
    source = "\n".join(p.read_text(errors="replace") for p in package.rglob("*.py"))
    for variable in services()["ministack"]["environment"]:
        assert re.search(rf"environ(?:\.get)?\(\s*[\"']{variable}[\"']|[\"']{variable}[\"']", source), variable
    assert set(services()["localstack"]["environment"]) <= LOCALSTACK_SETTINGS


def test_every_interpolated_variable_is_set_by_the_backend_or_documented() -> None:
    used = set(INTERPOLATION.findall(COMPOSE_FILE.read_text()))
    names = {name for name, _ in used}
    provided = set(LocalStackBackend().compose_env()) | set(MinistackDockerBackend().compose_env())
    assert names <= provided | USER_SETTINGS | PER_COMMAND, names - provided - USER_SETTINGS - PER_COMMAND
    assert provided <= names, f"the backend sets variables compose never reads: {provided - names}"
    readme = manual_text()
    for setting in USER_SETTINGS:
        assert setting in readme, f"{setting} is documented"


def test_the_service_commands_parse_with_the_projects_own_parsers() -> None:
    bridge = [with_defaults(str(arg)) for arg in services()["bridge"]["command"]]
    assert bridge[0] == "ingress"
    args = ingress_parser().parse_args(bridge[1:])
    assert args.mode == "direct" and args.broker == "mosquitto:1883"
    assert str(args.outputs) == "/state/outputs.json" and str(args.secret_file) == "/state/broker-secret"
    health = services()["bridge"]["healthcheck"]["test"]
    assert health[:4] == ["CMD", "python", "-m", "ingress"]
    assert ingress_parser().parse_args(health[4:]).metrics_file == args.metrics_file
    simulator = [with_defaults(str(arg)) for arg in services()["simulator"]["command"]]
    assert simulator[0] == "simulator"
    run = simulator_parser().parse_args(simulator[1:])
    assert (ROOT / run.fleet).is_file() and run.broker == ("mosquitto", 1883)
    assert str(run.broker_secret_file) == "/state/broker-secret"


def test_the_mounts_put_the_stack_state_where_the_commands_expect_it() -> None:
    state = "${TESTBED_COMPOSE_STATE:-./.testbed/localstack}"
    assert services()["mosquitto"]["volumes"] == [f"{state}/broker:{CONTAINER_BROKER_DIR}"]
    assert services()["mosquitto"]["command"][-1] == f"{CONTAINER_BROKER_DIR}/mosquitto.conf"
    for name in ("bridge", "simulator"):
        assert services()[name]["volumes"] == [f"{state}:/state"]


def test_the_dockerfile_is_pinned_and_copies_every_package() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert re.fullmatch(r"python:3\.12\.\d+-slim-\w+", base), "the Lambda runtime's Python, pinned"
    copied = {line.split()[1].rstrip("/") for line in lines if line.startswith("COPY ")}
    packages = {
        p.rstrip("*")
        for p in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
            "include"
        ]
    }
    assert packages <= copied
    for source in copied:
        assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["python", "-m"]' in lines, "one image, the command names the module"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv*", ".testbed"} <= set(ignored)


@pytest.mark.parametrize("backend", [LocalStackBackend(), MinistackDockerBackend()], ids=lambda b: b.name)
def test_the_backend_drives_its_own_profile(backend: ComposeBackend) -> None:
    assert backend.compose("up")[-3:] == ["--profile", backend.profile, "up"]
    assert backend.emulator_service in services()
    assert (
        f"127.0.0.1:${{{'LOCALSTACK' if backend.profile == 'localstack' else 'MINISTACK'}_PORT:-4566}}:4566"
        in (services()[backend.emulator_service]["ports"])
    )


def test_without_an_answering_engine_up_names_the_engine_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A docker CLI with no engine behind it (these machines, a stopped Docker Desktop) is told
    apart from a missing CLI, before any compose command runs."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setenv("COMPOSE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LOCALSTACK_RUNNER", "docker")
    printed = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=printed, width=1000))
    assert cli.main(["--backend", "localstack", "up"]) == 1
    out = printed.getvalue()
    assert "BACKEND=localstack needs a running Docker engine" in out
    if shutil.which("docker"):
        assert f"no Docker engine answers at unix://{tmp_path}/no-engine.sock" in out
        assert "BACKEND=embedded, which needs no Docker" in out
    else:
        assert "the docker CLI is not installed" in out
