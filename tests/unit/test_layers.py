"""The import graph points one way: telemetry/ (the shared contracts) imports no other part; each
service (processor/, simulator/, ingress/) imports only telemetry/; testbed/, the CLI behind the
Makefile, is imported by no part; localstack_plugins/, which runs inside LocalStack, imports none.
A new import against that order fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from testbed.paths import ROOT

PARTS = ("telemetry", "processor", "simulator", "ingress", "testbed", "localstack_plugins")
MAY_IMPORT = {
    "telemetry": set(),
    "processor": {"telemetry"},
    "simulator": {"telemetry"},
    "ingress": {"telemetry"},
    "testbed": {"telemetry", "processor", "simulator", "ingress"},
    # runs inside LocalStack's venv, where no other part's dependencies are installed
    "localstack_plugins": set(),
}


def imported_parts(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {name.split(".")[0] for name in names} & set(PARTS)
    return found


@pytest.mark.parametrize("part", PARTS)
def test_a_part_imports_only_the_parts_below_it(part: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_parts(path) - MAY_IMPORT[part] - {part})
        for path in sorted((ROOT / part).rglob("*.py"))
    }
    assert {path: parts for path, parts in wrong.items() if parts} == {}


def test_the_cli_module_is_imported_only_by_its_entry_point() -> None:
    """testbed/cli.py sits on top: nothing in the project imports it but `python -m testbed`."""
    importers = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        if path.parts[len(ROOT.parts)] in PARTS and path != ROOT / "testbed" / "__main__.py":
            tree = ast.parse(path.read_text(), str(path))
            modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            names = {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
            if "testbed.cli" in modules | names:
                importers.append(str(path.relative_to(ROOT)))
    assert importers == []
