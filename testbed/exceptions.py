"""The testbed's errors: one base, so the CLI reports every expected failure and lets bugs surface."""

from __future__ import annotations


class TestbedError(Exception):
    """A stack, a run or a benchmark cannot go on; the message says why and what to do."""

    __test__ = False  # a class named Test* that pytest must not collect
