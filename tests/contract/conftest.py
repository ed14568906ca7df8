"""Helpers that read infra/ as data (python-hcl2) for the static contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hcl2

from testbed.paths import INFRA_DIR


def _plain(value: Any) -> Any:
    """Drop python-hcl2's block markers so bodies compare as plain data."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load_infra() -> list[dict[str, Any]]:
    """Every .tf file of infra/, parsed."""
    return [_plain(hcl2.load(path.open())) for path in sorted(INFRA_DIR.glob("*.tf"))]


def blocks(kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every `resource` or `data` block; (name, name, body) for outputs."""
    for document in load_infra():
        for entry in document.get(kind, []):
            for type_, named in entry.items():
                if kind in ("output", "variable"):
                    yield type_, type_, named
                    continue
                for name, body in named.items():
                    yield type_, name, body


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for document in load_infra():
        for entry in document.get("locals", []):
            merged.update(entry)
    return merged
