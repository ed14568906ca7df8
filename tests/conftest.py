"""Fixtures shared by every test folder: message factories and settings."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from typing import Any

import pytest

from processor.config import Settings, parse_thresholds
from telemetry import new_message
from testbed.bench.fakes import SIGNING_KEY, fake_settings
from testbed.lifecycle.backends import BackendError, LocalStackHostBackend, backend_class
from testbed.pytest_plugin import setting
from tests.e2e.skips import ALLOWED_SKIPS, CHECKED_BACKENDS

# `make mutation` runs the property tests once per mutant: it caps their examples so a run takes
# minutes, not hours (a mutant that survives a capped run is still listed for a look).
EXAMPLES_CAP = int(os.environ.get("PROPERTY_EXAMPLES_CAP") or 0)


def examples(wanted: int) -> int:
    """A property test's example count: `wanted`, or fewer under PROPERTY_EXAMPLES_CAP."""
    return min(wanted, EXAMPLES_CAP) if EXAMPLES_CAP > 0 else wanted


THRESHOLDS = json.dumps(
    {
        "environmental": {"temperature": {"max": 45, "severity": "critical"}, "co2": {"max": 2000}},
        "cold_chain": {"temperature": {"min": -30, "max": 8, "severity": "critical"}},
    }
)


def make_message(
    device_id: str = "env-0001",
    msg_id: int = 1,
    ts: int | None = None,
    readings: dict[str, tuple[Any, str]] | None = None,
    key: bytes = SIGNING_KEY,
    device_type: str = "environmental",
) -> dict[str, Any]:
    return new_message(
        device_id=device_id,
        msg_id=msg_id,
        ts=int(time.time() * 1000) if ts is None else ts,
        device_type=device_type,
        firmware="1.2.3",
        site="plant-a",
        readings=readings or {"temperature": (21.5, "C"), "humidity": (40.0, "%")},
        key=key,
    )


@pytest.fixture
def settings() -> Settings:
    return fake_settings(parse_thresholds(THRESHOLDS))


# The end-to-end suite's skip check (tests/e2e/skips.py). Here, not in tests/e2e/conftest.py: xdist's
# controller loads this file for `pytest tests` and `pytest tests/e2e` alike, and it is the process
# that sees every test's report.
E2E_PREFIX = "tests/e2e/"

SKIP_CHECK = pytest.StashKey[str]()


def _test_key(nodeid: str) -> str | None:
    """An end-to-end test as the allow-list names it (file and function, parameters left out); None
    for any other test."""
    if not nodeid.startswith(E2E_PREFIX):
        return None
    return nodeid.removeprefix(E2E_PREFIX).split("[", 1)[0]


def pytest_configure(config: pytest.Config) -> None:
    name = setting(config, "backend")
    try:
        host = backend_class(name) is LocalStackHostBackend
    except BackendError:  # the stack fixture names what is wrong with it
        host = False
    config.stash[SKIP_CHECK] = "localstack-host" if host else name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A skip this backend is not allowed (tests/e2e/skips.py) is a failure."""
    report: pytest.TestReport = yield
    backend = item.config.stash[SKIP_CHECK]
    key = _test_key(item.nodeid)
    allowed = key is None or backend not in CHECKED_BACKENDS or backend in ALLOWED_SKIPS.get(key, {})
    if report.skipped and not hasattr(report, "wasxfail") and not allowed:
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped on {backend} ({why}), which tests/e2e/skips.py does not allow"
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember each test that ran (passed or failed, not skipped); xdist sends workers' reports here."""
    key = _test_key(report.nodeid)
    if report.when == "call" and not report.skipped and key is not None:
        RAN_TESTS.add(key)


# filled on the process that reports the session (xdist's controller, or the one pytest process)
RAN_TESTS: set[str] = set()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test listed as skipping on this backend that ran instead: the list is out of date."""
    backend = session.config.stash[SKIP_CHECK]
    stale = sorted(key for key in RAN_TESTS if backend in ALLOWED_SKIPS.get(key, {}))
    if stale and not hasattr(session.config, "workerinput"):
        session.config.get_terminal_writer().line(
            f"tests/e2e/skips.py allows these to skip on {backend}, but they ran: {', '.join(stale)}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
