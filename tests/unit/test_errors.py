"""Each package's errors share one base, so its CLI reports every expected failure as one line and
a new error class cannot be forgotten in the CLI's except clause."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import simulator
import testbed
from simulator.exceptions import SimulatorError
from telemetry.outputs import OutputsError
from testbed.cli import EXPECTED_ERRORS
from testbed.exceptions import TestbedError

# Run inside venvs of their own: the emulator's (it imports ministack) and Locust's (it imports locust).
EMULATOR_SIDE = {"testbed.lifecycle.backends.ministack_loopback", "simulator.locustfile"}


@pytest.mark.parametrize(("package", "base"), [(simulator, SimulatorError), (testbed, TestbedError)])
def test_every_error_a_package_defines_derives_from_its_base(package: object, base: type[Exception]) -> None:
    defined = []
    for module_info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):  # type: ignore[attr-defined]
        if module_info.name.endswith("__main__") or module_info.name in EMULATOR_SIDE:
            continue
        module = importlib.import_module(module_info.name)
        defined += [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, Exception) and cls.__module__ == module.__name__ and cls is not base
        ]
    assert defined, "the walk found the package's errors"
    assert [cls.__qualname__ for cls in defined if not issubclass(cls, base)] == []


def test_the_testbed_cli_reports_both_packages_errors_and_the_outputs_contracts() -> None:
    assert set(EXPECTED_ERRORS) == {TestbedError, SimulatorError, OutputsError}
