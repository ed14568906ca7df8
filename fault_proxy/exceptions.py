"""What the fault proxy refuses."""

from __future__ import annotations


class RuleError(ValueError):
    """A Chaos API request that is not a valid rule list or effect: answered 400 with this reason,
    and the rules already set stay as they were."""
