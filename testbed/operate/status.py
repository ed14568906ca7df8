"""`make status`: what runs for a stack, its ports, the ingress mode and how old its outputs are."""

from __future__ import annotations

import time

from testbed.lifecycle.backends.base import Component
from testbed.lifecycle.stack import Stack


def stack_status(stack: Stack, now: float | None = None) -> tuple[list[Component], dict[str, str]]:
    """The backend's components, and facts about the deployment (ingress, outputs and their age)."""
    components = stack.backend.components()
    facts = {"backend": stack.backend.name, "endpoint": stack.backend.endpoint_url()}
    mode = stack.backend.ingress_mode()
    if mode is not None:
        facts["ingress mode"] = mode
    if "broker" in stack.backend.log_files():
        refused = stack.backend.broker_refusals(0)
        facts["refused by the broker"] = ", ".join(f"{n:,} {kind}" for kind, n in refused.items()) or "nothing"
    outputs = stack.outputs_file
    if outputs.exists():
        age_s = (now if now is not None else time.time()) - outputs.stat().st_mtime
        facts["stack outputs"] = f"{outputs} (written {_age(age_s)} ago)"
    else:
        facts["stack outputs"] = "none: the stack was never deployed (make up)"
    return components, facts


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
