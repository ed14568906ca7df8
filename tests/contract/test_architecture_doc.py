"""docs/architecture.md's "where to change what" table is the tree: every package of the project
has a row, every path a row names exists, and every package says its one job in its docstring."""

from __future__ import annotations

import ast
import re

from testbed.paths import ROOT

PARTS = ("telemetry", "toolkit", "processor", "simulator", "ingress", "fault_proxy", "localstack_plugins", "testbed")


def where_table() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    return text.split("<!-- where:start -->")[1].split("<!-- where:end -->")[0]


def packages() -> list[str]:
    return sorted(str(p.parent.relative_to(ROOT)) + "/" for part in PARTS for p in (ROOT / part).rglob("__init__.py"))


def test_every_package_has_a_row_and_every_named_path_exists() -> None:
    named = set(re.findall(r"`([a-z_][\w./]*)`", where_table()))
    paths = {name for name in named if "/" in name or name.endswith(".py")}
    assert [p for p in packages() if p != "testbed/" and p not in paths] == [], "a package without a row"
    assert sorted(p for p in paths if not (ROOT / p.split(" ")[0]).exists()) == [], "a row naming no file"


def test_every_package_says_its_one_job() -> None:
    silent = [p for p in packages() if not ast.get_docstring(ast.parse((ROOT / p / "__init__.py").read_text()))]
    assert silent == []
