"""The end-to-end suite's skip allow-list (tests/e2e/skips.py) names real tests, checked backends and
a reason each: an entry that names nothing would let a renamed test skip unnoticed."""

from __future__ import annotations

import ast

from testbed.paths import ROOT
from tests.e2e.skips import ALLOWED_SKIPS, CHECKED_BACKENDS

E2E = ROOT / "tests" / "e2e"


def _tests() -> set[str]:
    found = set()
    for module in E2E.glob("test_*.py"):
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.add(f"{module.name}::{node.name}")
    return found


def test_every_allowed_skip_names_a_test_of_the_suite_a_checked_backend_and_a_reason() -> None:
    assert set(ALLOWED_SKIPS) <= _tests(), sorted(set(ALLOWED_SKIPS) - _tests())
    for test, backends in ALLOWED_SKIPS.items():
        assert backends and set(backends) <= set(CHECKED_BACKENDS), test
        assert all(len(reason) > 20 for reason in backends.values()), test


def test_no_test_may_skip_on_every_checked_backend() -> None:
    """A test skipped everywhere tests nothing: at least one backend of the suite runs each."""
    assert [t for t, backends in ALLOWED_SKIPS.items() if set(backends) == set(CHECKED_BACKENDS)] == []
