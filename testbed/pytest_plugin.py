"""pytest fixtures for an AWS IoT pipeline on a local stack: `stack`, `stores`, `mqtt_device` and
`run_scenario`, loaded through the `pytest11` entry point once the project is installed.

The stack comes up once per session (per xdist worker) on free ports and goes down at the end.
Options (or the environment, or `[tool.pytest.ini_options]`) pick the backend, the ingress and
whether the emulator enforces IAM; a `testbed_variables` fixture of your own passes Terraform
variables. With IAM enforced, a test fails when IAM denied the processor anything meanwhile; a test
that leaves the stack with a server down or in another ingress mode fails by name.

The testbed's modules are imported inside the fixtures: a session that uses none pays nothing.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from toolkit.settings import SETTINGS as ENVIRONMENT

if TYPE_CHECKING:
    from testbed.lifecycle.stack import Stack
    from testbed.runs.runner import ScenarioRun
    from testbed.stores import Stores
    from testbed.testing import MqttDevice

# option, environment variable (its default is the ini's: toolkit/settings.py), ini key
OPTIONS = {
    "backend": ("--testbed-backend", "BACKEND", "testbed_backend"),
    "ingress": ("--testbed-ingress", "INGRESS", "testbed_ingress"),
    "iam": ("--testbed-iam", "IAM", "testbed_iam"),
    "infra_dir": ("--testbed-infra-dir", "TESTBED_INFRA_DIR", "testbed_infra_dir"),
    "outputs": ("--testbed-outputs", "TESTBED_OUTPUTS", "testbed_outputs"),
    "device_topic": ("--testbed-device-topic", "TESTBED_DEVICE_TOPIC", "testbed_device_topic"),
}
HELP = {
    "backend": "where the stack runs: embedded, external (the emulator at AWS_ENDPOINT_URL), localstack, "
    "ministack-docker",
    "ingress": "how device messages reach the pipeline locally: direct, sqs or iot",
    "iam": "whether the embedded emulator enforces IAM: off or enforce",
    "infra_dir": "the Terraform folder to deploy (an ini path is relative to the rootdir; default: the testbed's own)",
    "outputs": "your stack's output names for the ones the testbed reads: ours=theirs pairs, such as "
    "ingest_queue_url=readings_queue_url",
    "device_topic": "each device's topic, {device_id} one level of it (default sensors/{device_id}/telemetry)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testbed", "IoT pipeline testbed (the stack fixture)")
    for name, (option, variable, ini) in OPTIONS.items():
        default = ENVIRONMENT[variable].default or ""
        group.addoption(option, help=f"{HELP[name]} (else ${variable}, else the ini {ini}, else {default})")
        parser.addini(ini, HELP[name], default=default)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "iam_denial: the test takes a permission away on purpose (no check for denied calls)"
    )


def setting(config: pytest.Config, name: str) -> str:
    """A testbed setting: the command-line option, else the environment, else the ini file."""
    option, variable, ini = OPTIONS[name]
    return str(config.getoption(option) or ENVIRONMENT[variable].raw() or config.getini(ini))


def infra_folder(config: pytest.Config) -> str:
    """The Terraform folder: as given on the command line or in the environment, or relative to the rootdir."""
    option, variable, ini = OPTIONS["infra_dir"]
    given = config.getoption(option) or ENVIRONMENT[variable].raw()
    if given:
        return str(given)
    from_ini = str(config.getini(ini))
    return str(config.rootpath / from_ini) if from_ini else ""


@pytest.fixture(scope="session")
def testbed_variables() -> dict[str, Any]:
    """Terraform variables on top of the backend's: override this fixture to pass your own."""
    return {}


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, testbed_variables: dict[str, Any]
) -> Iterator[Stack]:
    """The pipeline deployed once per session (per xdist worker), taken down at its end."""
    from testbed.exceptions import TestbedError
    from testbed.lifecycle.infra import Infrastructure
    from testbed.lifecycle.stack import Stack
    from testbed.testing import session_backend, session_variables

    name, ingress, iam, outputs, topic = (
        setting(request.config, key) for key in ("backend", "ingress", "iam", "outputs", "device_topic")
    )
    workers = int(ENVIRONMENT["PYTEST_XDIST_WORKER_COUNT"].raw() or 1)
    try:
        infra = Infrastructure.configured(infra_folder(request.config), outputs)
        backend = session_backend(
            name, iam, tmp_path_factory.mktemp(name), ENVIRONMENT["AWS_ENDPOINT_URL"].text(), workers, topic
        )
    except TestbedError as exc:  # a setting that cannot work: said once, not as a traceback per test
        pytest.fail(str(exc), pytrace=False)
    deployed = Stack(backend, variables=session_variables(name, testbed_variables), ingress=ingress, infra=infra)
    try:
        try:
            _deploy(deployed)
        except TestbedError as exc:  # what the emulator said goes with it: a CI log is all there is
            pytest.fail(f"{exc}\n{_emulator_log_tail(deployed)}", pytrace=False)
        yield deployed
    finally:
        try:
            if name == "external":  # the emulator is the user's: what this session deployed goes again
                deployed.destroy()
        finally:
            deployed.down()
        _assert_nothing_left(deployed)


def _deploy(deployed: Stack) -> None:
    """Bring the session's stack up; an emulator of ours that stopped answering Terraform is aborted
    (`Stack.up` keeps its threads' stacks in its log), said as a warning, and the stack brought up once more."""
    from testbed.lifecycle.stack import EmulatorAborted

    try:
        deployed.up()
    except EmulatorAborted as exc:
        tail = _emulator_log_tail(deployed, 80)
        deployed.down()
        deployed.up()
        said = f"the session's emulator stopped answering and was started again: {exc}\n{tail}"
        try:  # said once the stack is up: a project that turns warnings into errors still gets its stack
            warnings.warn(said, pytest.PytestWarning, stacklevel=1)
        except Warning:
            logging.getLogger("testbed").warning(said)


def _emulator_log_tail(deployed: Stack, lines: int = 40) -> str:
    log = deployed.backend.log_files().get("emulator")
    if log is None or not log.exists():
        return ""
    with open(log, errors="replace") as text:
        tail = text.readlines()[-lines:]
    return f"the end of {log}:\n{''.join(tail)}"


def _assert_nothing_left(deployed: Stack) -> None:
    """`down` stops every process the stack started, Lambda environments included."""
    from testbed.lifecycle.processes import processes_under

    if deployed.backend.local_processes and (left := processes_under(deployed.backend.state_dir)):
        pytest.fail(f"processes of the stack outlived its down: {left}", pytrace=False)


@pytest.fixture(scope="session")
def stores(stack: Stack) -> Stores:
    """Read what the pipeline stored, quarantined, archived, dead-lettered and alerted."""
    from testbed.stores import Stores

    return Stores.connect(stack.outputs(), stack.client, stack.alert_journal)


@pytest.fixture
def mqtt_device(stack: Stack) -> Iterator[Callable[..., MqttDevice]]:
    """`mqtt_device()` or `mqtt_device("my-id")`: a device provisioned on the stack and connected;
    its `publish(payload, topic=None)` (its own topic by default) returns once the broker acknowledged."""
    from testbed.testing import MqttDevice, new_device_id

    provisioned: list[str] = []
    connected: list[MqttDevice] = []

    def connect(device_id: str | None = None) -> MqttDevice:
        name = device_id or new_device_id()
        provisioned.append(name)  # released at the end even if the connection fails
        stack.backend.provision_devices([name])
        connected.append(MqttDevice(name, stack.backend.mqtt_target(), stack.backend.device_topic))
        return connected[-1]

    try:
        yield connect
    finally:
        try:
            for device in connected:
                device.close()
        finally:
            stack.backend.release_devices(provisioned)


@pytest.fixture
def run_scenario(stack: Stack, tmp_path: Path) -> Callable[..., ScenarioRun]:
    """`run_scenario("smoke")` or `run_scenario("my.yaml", duration_s=5)`: publish, drain, reconcile
    and return the typed result; the reports go to the test's tmp_path."""
    from rich.console import Console

    from testbed.runs.runner import run_scenario as run_loaded
    from testbed.runs.scenario import Scenario, load_scenario

    def run(scenario: str | Path, **overrides: Any) -> ScenarioRun:
        loaded = load_scenario(str(scenario))
        if overrides:
            loaded = Scenario.model_validate({**loaded.model_dump(), **overrides})
        return run_loaded(stack, loaded, Console(quiet=True), reports_dir=tmp_path / "reports")

    return run


def _testbed_stack(request: pytest.FixtureRequest) -> Stack | None:
    """The test's `stack` if it is the testbed's (a project may have a `stack` fixture of its own)."""
    if "stack" not in request.fixturenames:
        return None
    from testbed.lifecycle.stack import Stack

    value = request.getfixturevalue("stack")
    return value if isinstance(value, Stack) else None


@pytest.fixture(autouse=True)
def _testbed_no_access_denied(request: pytest.FixtureRequest) -> Iterator[None]:
    """With IAM enforced, a test on the stack fails when IAM denied the processor anything meanwhile,
    naming the action and the resource (a test waiting for a reading would otherwise only time out).
    A test that takes a permission away on purpose says so with the `iam_denial` marker."""
    deployed = _testbed_stack(request)
    if deployed is None or request.node.get_closest_marker("iam_denial") or not deployed.backend.iam_enforced:
        yield
        return
    from botocore.exceptions import BotoCoreError, ClientError

    from testbed.testing import denied_calls

    since_ms = int(time.time() * 1000) - 1000
    yield
    try:
        denied = denied_calls(deployed, since_ms)
    except (BotoCoreError, ClientError, OSError, ValueError):  # the stack is down (a fault test): nothing to read
        return
    if denied:
        pytest.fail(f"IAM denied the processor: {'; '.join(denied)}", pytrace=False)


@pytest.fixture(autouse=True)
def _testbed_stack_left_whole(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that leaves the session's stack with a server down or in another ingress mode fails by
    name, and the stack is brought up again: no later test inherits it, whatever the order."""
    yield
    deployed = _testbed_stack(request)
    if deployed is None:
        return
    from testbed.testing import stack_problems

    problems = stack_problems(deployed)
    if problems:
        deployed.up()
        pytest.fail(f"the test left the shared stack with {'; '.join(problems)} (it was brought up again)")
