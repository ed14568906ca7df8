"""The README's table of environment variables is the set the code reads, no more, no less."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from testbed.paths import ROOT

FOLDERS = ("testbed", "simulator", "ingress")


def literal(node: ast.expr, constants: dict[str, str]) -> str | None:
    """A string literal, or the value of a module constant holding one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return constants.get(node.id) if isinstance(node, ast.Name) else None


def read_by_code() -> set[str]:
    """Names passed to os.environ.get / os.getenv / os.environ[...] (literals or module constants)."""
    names: set[str] = set()
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            constants = {
                target.id: node.value.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                for target in node.targets
                if isinstance(target, ast.Name) and isinstance(node.value.value, str)
            }

            for node in ast.walk(tree):
                key = None
                if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
                    func = node.func
                    reads_environ = func.attr == "get" and getattr(func.value, "attr", None) == "environ"
                    if reads_environ or func.attr == "getenv":
                        key = literal(node.args[0], constants)
                elif isinstance(node, ast.Subscript) and getattr(node.value, "attr", None) == "environ":
                    key = literal(node.slice, constants)
                if key is not None:
                    names.add(key)
    return names


def documented(readme: Path = ROOT / "README.md") -> set[str]:
    table = readme.read_text().split("<!-- env:start -->")[1].split("<!-- env:end -->")[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_the_readme_lists_exactly_the_environment_the_code_reads() -> None:
    code, docs = read_by_code(), documented()
    assert code - docs == set(), f"read by the code, missing from the README's table: {sorted(code - docs)}"
    assert docs - code == set(), f"in the README's table, read by nothing: {sorted(docs - code)}"


def test_the_scan_sees_reads_of_each_shape() -> None:
    """The scan must notice a literal and a module constant, or the test above proves nothing."""
    assert {"BACKEND", "SIMULATOR_SIGNING_KEY", "MINISTACK_SNAPSHOT_MARKER"} <= read_by_code()
