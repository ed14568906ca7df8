"""Helpers that read infra/ as data (python-hcl2) for the static contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hcl2

from testbed.paths import INFRA_DIR


def load_infra() -> list[dict[str, Any]]:
    """Every .tf file of infra/, parsed."""
    return [hcl2.load(path.open()) for path in sorted(INFRA_DIR.glob("*.tf"))]


def blocks(kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every `resource` or `data` block; (name, name, body) for outputs."""
    for document in load_infra():
        for entry in document.get(kind, []):
            for type_, named in entry.items():
                if kind in ("output", "variable"):
                    yield type_.strip('"'), type_.strip('"'), named
                    continue
                for name, body in named.items():
                    yield type_.strip('"'), name.strip('"'), body


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for document in load_infra():
        for entry in document.get("locals", []):
            merged.update(entry)
    return merged
