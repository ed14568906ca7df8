"""The import graph points one way: telemetry/ (the shared contracts) and toolkit/ (the command-line
tools' helpers) import no other part; the processor imports only telemetry/, the simulator and the
ingress telemetry/ and toolkit/; the API fault proxy none; testbed/, the CLI behind the
Makefile, is imported by no part; localstack_plugins/, which runs inside LocalStack, imports none.
A new import against that order fails here."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from testbed.paths import ROOT

PARTS = ("telemetry", "toolkit", "processor", "simulator", "ingress", "fault_proxy", "testbed", "localstack_plugins")
MAY_IMPORT = {
    "telemetry": set(),
    # the command-line tools' helpers, outside the Lambda zip
    "toolkit": set(),
    "processor": {"telemetry"},
    "simulator": {"telemetry", "toolkit"},
    "ingress": {"telemetry", "toolkit"},
    # a proxy that knows AWS's wire protocols, not the pipeline
    "fault_proxy": set(),
    "testbed": {"telemetry", "toolkit", "processor", "simulator", "ingress", "fault_proxy"},
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
    """testbed/cli/ sits on top: nothing in the project imports it but `python -m testbed`."""
    importers = []
    package = ROOT / "testbed" / "cli"
    for path in sorted(ROOT.glob("*/**/*.py")):
        inside = package in path.parents
        if path.parts[len(ROOT.parts)] in PARTS and path != ROOT / "testbed" / "__main__.py" and not inside:
            tree = ast.parse(path.read_text(), str(path))
            modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            names = {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
            if any(name == "testbed.cli" or name.startswith("testbed.cli.") for name in modules | names):
                importers.append(str(path.relative_to(ROOT)))
    assert importers == []


def _testbed_imports() -> dict[str, set[str]]:
    """Each testbed module (dotted) and the testbed modules it imports, wherever in the file."""
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in (ROOT / "testbed").rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from testbed.cli import common` imports the module testbed.cli.common, not the package's code
                targets |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                }
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _package(module: str) -> str:
    """testbed.runs.runner -> testbed.runs; testbed.stores -> testbed.stores (a module of its own)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_testbeds_modules_and_packages_import_each_other_in_one_direction() -> None:
    """No import cycle between testbed's modules nor between its packages (runs/, bench/, cost/, ...):
    every import points down, so each folder can be read knowing only those below it."""
    graph = _testbed_imports()
    graphlib.TopologicalSorter(graph).prepare()  # CycleError names the modules
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(_package(module), set()).update(
            _package(t) for t in targets if _package(t) != _package(module)
        )
    graphlib.TopologicalSorter(packages).prepare()
    assert "testbed.runs" not in packages["testbed.cost"] | packages["testbed.bench"] | packages["testbed.operate"]
