"""The simulator's hot path to a message's signed wire bytes.

Generating and signing is half of what a simulated publish costs, and most of that was the
stdlib JSON encoder (~6.5 us a message; orjson ~0.6 us). orjson writes the very bytes of the
canonical form (keys sorted, no whitespace, UTF-8) for everything a v1 message holds, except
floats below 1e-4 or from 1e15 on, which Python writes as `1e-05` and orjson as `1e-5`. Those
messages take the stdlib path, so the signature always covers the canonical bytes the
processor recomputes.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any, cast

import orjson

from simulator.exceptions import SimulatorError
from telemetry.schema import canonical_bytes, signed_payload, with_signature

# Magnitudes where orjson and Python's float repr agree digit for digit (checked by a test).
EXACT_FLOAT_RANGE = (1e-4, 1e15)


def _orjson_exact(readings: dict[str, dict[str, Any]]) -> bool:
    low, high = EXACT_FLOAT_RANGE
    for reading in readings.values():
        value = reading["value"]
        if type(value) is float and not low <= abs(value) < high:
            return False
    return True


def signed_message(message: dict[str, Any], key: bytes | None) -> bytes:
    """`telemetry.signed_payload(message, key, numbers_canonical=True)`, faster (same bytes); with
    no key, the canonical bytes alone (for a pipeline that does not check signatures)."""
    if key is None:
        return canonical_bytes(message, numbers_canonical=True)
    if not _orjson_exact(message["readings"]):
        return signed_payload(message, key, numbers_canonical=True)
    return with_signature(orjson.dumps(message, option=orjson.OPT_SORT_KEYS), key)


# A team's own wire format: a function of this project's message (a dict, unsigned) returning the
# payload to send (bytes or str as they are, anything else as JSON).
PayloadHook = Callable[[dict[str, Any]], Any]


class PayloadHookError(SimulatorError):
    """`--payload-hook` names nothing importable and callable."""


def load_payload_hook(spec: str) -> PayloadHook:
    """`module:function`, imported from the working directory or the environment."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise PayloadHookError(f"--payload-hook {spec!r} is not module:function")
    if os.getcwd() not in sys.path:  # a console script's path starts at its own folder, not the project's
        sys.path.append(os.getcwd())
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise PayloadHookError(f"--payload-hook {spec!r}: {exc}") from None
    if not callable(function):
        raise PayloadHookError(f"--payload-hook {spec!r} is not a function")
    return cast(PayloadHook, function)


def hooked_payload(hook: PayloadHook, message: dict[str, Any]) -> bytes:
    out = hook(message)
    if isinstance(out, bytes):
        return out
    return out.encode() if isinstance(out, str) else orjson.dumps(out, option=orjson.OPT_SORT_KEYS)
