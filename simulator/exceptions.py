"""The simulator's errors: one base, so a CLI can report every expected failure and nothing else."""

from __future__ import annotations


class SimulatorError(ValueError):
    """Input the simulator cannot run with; the message says what to change."""
