"""A sharded run's documents bound to the run: each carries an HMAC keyed by the run's own key.

`bin/testbed shards` makes a random key per run and gives it to each shard out of band (a
file, a Kubernetes Secret); a shard seals its summary with it, the master of a Locust run and the
merge verify it. The MAC says who wrote a summary; the merge's check against the run's plan is what
decides whether its messages count.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simulator.exceptions import SimulatorError
from simulator.fleet import Fleet
from telemetry.files import read_bounded

MAC_FIELD = "mac"
_HEX_MAC = re.compile(r"[0-9a-f]{64}")
RUN_KEY_BYTES = 32
# a key file is 64 hex characters and a newline; anything much larger is not one
RUN_KEY_FILE_MAX_BYTES = 1024


class RunKeyError(SimulatorError):
    """A run key file that cannot be read, or is not one."""


def write_key(path: Path, key: bytes) -> bytes:
    """Write `key` to `path` for its owner only (0600, created exclusively: never over a planted file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    return key


def new_run_key(path: Path) -> bytes:
    """A fresh random key for a run, written to `path`."""
    return write_key(path, secrets.token_bytes(RUN_KEY_BYTES))


def shards_key(run_key: bytes, run_id: str) -> bytes:
    """The key the run's shards seal their summaries with, derived from the run's key, which never
    leaves the machine that prepared the run (it seals the manifest: a shard cannot rewrite the plan)."""
    return hmac.new(run_key, f"shards:{run_id}".encode(), hashlib.sha256).digest()


def read_run_key(path: Path) -> bytes:
    """The run key in `path`: a regular file of 64 hex characters."""
    try:
        text = read_bounded(path, RUN_KEY_FILE_MAX_BYTES)
    except OSError as exc:
        raise RunKeyError(f"run key {path} cannot be read: {exc.strerror or exc}") from None
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != RUN_KEY_BYTES:
        raise RunKeyError(f"{path} is not a run key ({RUN_KEY_BYTES * 2} hex characters)")
    return key


def _mac(document: Mapping[str, Any], key: bytes) -> str:
    body = {name: value for name, value in document.items() if name != MAC_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def seal(document: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """`document` with its MAC under `key`."""
    return {**document, MAC_FIELD: _mac(document, key)}


def verified(document: Any, key: bytes) -> bool:
    """True if `document` is an object whose MAC is the one `key` gives it."""
    mac = document.get(MAC_FIELD) if isinstance(document, dict) else None
    if not isinstance(mac, str) or not _HEX_MAC.fullmatch(mac):
        return False
    try:
        expected = _mac(document, key)
    except (TypeError, ValueError):  # not JSON as a shard writes it (NaN, odd keys)
        return False
    return hmac.compare_digest(expected, mac)


def fleet_digest(fleet: Fleet) -> str:
    """SHA-256 of the fleet as parsed, so a merge can tell a shard ran the planned fleet."""
    return hashlib.sha256(fleet.model_dump_json().encode()).hexdigest()
