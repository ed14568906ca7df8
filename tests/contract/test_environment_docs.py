"""The environment the tools read is declared once (toolkit/settings.py): the code reads a variable
through its setting only, every declared setting is read, and the README's table is the one the
declarations generate."""

from __future__ import annotations

import ast
from pathlib import Path

from testbed.cli import reference
from testbed.lifecycle.interpreters import setting as interpreter_setting
from testbed.paths import ROOT
from tests.docs import marked_block
from toolkit import settings

FOLDERS = ("testbed", "simulator", "ingress", "toolkit")
# Files that run where the project is not installed, reading what their launcher sets: ministack's
# launcher (in ministack's venv). The Lambda's environment is its own contract (processor/config.py),
# and localstack_plugins/ run inside LocalStack.
OWN_ENVIRONMENT = {Path("testbed/lifecycle/backends/ministack_loopback.py"), Path("toolkit/settings.py")}
# Read under a name the code builds: the interpreter a version's setting names (PYTHON_3_13).
BUILT_NAMES = {interpreter_setting("3.13"), interpreter_setting("3.12")}


def literal(node: ast.expr, constants: dict[str, str]) -> str | None:
    """A string literal, or the value of a constant (module or class level) holding one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return constants.get(node.attr) if isinstance(node, ast.Attribute) else None


def scan() -> tuple[set[str], dict[str, set[str]]]:
    """(names read through a setting, {file: names read from os.environ directly})."""
    through_settings: set[str] = set()
    direct: dict[str, set[str]] = {}
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
                if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) in ("SETTINGS", "ENVIRONMENT"):
                    name = literal(node.slice, constants)
                    if name is not None:
                        through_settings.add(name)
                    continue
                key = None
                if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
                    func = node.func
                    reads_environ = func.attr == "get" and getattr(func.value, "attr", None) == "environ"
                    if reads_environ or func.attr == "getenv":
                        key = literal(node.args[0], constants) or "<a name built at run time>"
                elif isinstance(node, ast.Subscript) and getattr(node.value, "attr", None) == "environ":
                    key = literal(node.slice, constants) or "<a name built at run time>"
                if key is not None:
                    direct.setdefault(str(path.relative_to(ROOT)), set()).add(key)
    return through_settings, direct


def test_code_reads_the_environment_through_its_declared_settings_only() -> None:
    through_settings, direct = scan()
    outside = {file: names for file, names in direct.items() if Path(file) not in OWN_ENVIRONMENT}
    assert outside == {}, "read from os.environ, not through toolkit.settings.SETTINGS"
    assert through_settings - set(settings.SETTINGS) == set(), "read through a setting nobody declared"
    read = through_settings | BUILT_NAMES | direct.get("testbed/lifecycle/backends/ministack_loopback.py", set())
    assert set(settings.SETTINGS) - read == set(), "declared, read by nothing"


def test_the_readme_table_is_the_one_the_settings_generate() -> None:
    table = marked_block("env").removeprefix("\n")
    assert table == settings.markdown(), "regenerate it: python -m toolkit.settings"


def test_the_scan_sees_reads_of_each_shape() -> None:
    """The scan must notice a literal, a module constant and a class constant, or the tests above prove nothing."""
    through_settings, direct = scan()
    assert {"BACKEND", "SIMULATOR_SIGNING_KEY", "LOCALSTACK_RUNNER", "TESTBED_TERRAFORM_TIMEOUT_S"} <= through_settings
    assert {"MINISTACK_SNAPSHOT_MARKER", "BIND_HOST"} <= direct["testbed/lifecycle/backends/ministack_loopback.py"]


def test_the_configuration_reference_is_what_the_code_declares() -> None:
    """docs/configuration.md's environment table and command-line options, generated from the
    settings table and the tools' parsers (`make docs` regenerates them)."""
    text = reference.CONFIGURATION.read_text()
    assert reference.rendered(text) == text, "regenerate it: make docs"
    assert "#### `bin/testbed up`" in text and "`--no-parity`" in text and "#### `bin/simulator run`" in text


def test_the_glossary_of_counts_is_what_the_code_declares() -> None:
    text = reference.LOAD_RUNS.read_text()
    assert "<!-- counts:start -->" in text
    assert reference.with_glossary(text) == text, "regenerate it: make docs"
