"""Judge a finished `mutmut run` against the survivors we accept, so `make mutation` fails on a new one.

The budget is per function (mutmut's numbers shift whenever a function changes): how many of its
mutants may survive, and why that is acceptable (usually: only the end-to-end tests reach it). A
function over its budget, or with survivors and no entry, fails the run and is listed with the
surviving mutations; an entry with more room than it needs is reported, so the budget only shrinks.
Each package (and `all` of them) also has a floor: the share of its mutants killed may not fall below
it, and a run above it says so, so the floor only rises.
Usage, after `mutmut run`: `python -m tests.mutation_budget [--json FILE]`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

BUDGET_FILE = Path(__file__).with_name("mutation_budget.toml")
KILLED = frozenset({"killed", "timeout", "caught by type check", "segfault"})
SURVIVED = frozenset({"survived", "no tests", "suspicious"})
RESULT_LINE = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")
CLASS_SEPARATOR = "ǁ"
ALL = "all"


class BudgetError(RuntimeError):
    """The run is incomplete, or the budget file cannot be read."""


@dataclass(frozen=True)
class Allowance:
    survivors: int
    reason: str


def function_of(mutant: str) -> str:
    """`processor.x_parse__mutmut_3` -> processor.parse; `ingress.bridge.xǁRuleBridgeǁ_run__mutmut_1` ->
    ingress.bridge.RuleBridge._run."""
    module, _, mangled = mutant.rsplit("__mutmut_", 1)[0].rpartition(".")
    if mangled.startswith(f"x{CLASS_SEPARATOR}"):
        _, cls, method = mangled.split(CLASS_SEPARATOR)
        return f"{module}.{cls}.{method}"
    return f"{module}.{mangled.removeprefix('x_')}"


def mutated_line(diff: str) -> str:
    """The added lines of `mutmut show`'s diff, stripped and joined."""
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return " / ".join(added)


def mutmut(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], capture_output=True, text=True, check=True).stdout


def statuses() -> dict[str, str]:
    found = {}
    for line in mutmut("results", "--all", "true").splitlines():
        match = RESULT_LINE.match(line)
        if match:
            found[match["name"]] = match["status"]
    return found


def load_budget(path: Path = BUDGET_FILE) -> dict[str, Allowance]:
    """Function -> how many survivors it may have and why; an entry without a reason is refused."""
    try:
        entries = tomllib.loads(path.read_text())["function"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise BudgetError(f"{path}: {exc}") from exc
    budget = {}
    for entry in entries:
        if not str(entry.get("reason", "")).strip():
            raise BudgetError(f"{path}: the entry for {entry.get('name')} has no reason")
        budget[entry["name"]] = Allowance(int(entry["survivors"]), entry["reason"])
    return budget


def load_floors(path: Path = BUDGET_FILE) -> dict[str, float]:
    """Package (or `all`) -> the lowest share of its mutants a run may kill."""
    try:
        entries = tomllib.loads(path.read_text()).get("package", [])
        return {str(entry["name"]): float(entry["score"]) for entry in entries}
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
        raise BudgetError(f"{path}: {exc}") from exc


def package_scores(found: dict[str, str]) -> dict[str, float]:
    """The share of mutants killed per top-level package, and over `all` of them."""
    killed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for name, status in found.items():
        for package in (name.split(".", 1)[0], ALL):
            total[package] += 1
            killed[package] += status in KILLED
    return {package: round(killed[package] / total[package], 4) for package in sorted(total)}


def below_floor(scores: dict[str, float], floors: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Package -> (floor, score) where a package that has a floor scored under it (or was not run)."""
    return {
        package: (floor, scores.get(package, 0.0))
        for package, floor in floors.items()
        if scores.get(package, 0.0) < floor
    }


@dataclass(frozen=True)
class Verdict:
    counts: dict[str, int]
    over: dict[str, list[str]]  # function -> its surviving mutants, where it exceeds its allowance
    slack: dict[str, tuple[int, int]]  # function -> (allowed, survived) where fewer survived


def judge(found: dict[str, str], budget: dict[str, Allowance]) -> Verdict:
    pending = sorted(name for name, status in found.items() if status not in KILLED | SURVIVED)
    if pending:
        raise BudgetError(f"{len(pending)} mutant(s) were not run (e.g. {pending[0]}): run `mutmut run` to the end")
    survivors: dict[str, list[str]] = {}
    for name, status in sorted(found.items()):
        if status in SURVIVED:
            survivors.setdefault(function_of(name), []).append(name)
    over = {
        function: names
        for function, names in survivors.items()
        if len(names) > budget.get(function, Allowance(0, "")).survivors
    }
    slack = {
        function: (allowance.survivors, len(survivors.get(function, [])))
        for function, allowance in budget.items()
        if len(survivors.get(function, [])) < allowance.survivors
    }
    counts = {"mutants": len(found), **Counter("killed" if s in KILLED else "survived" for s in found.values())}
    return Verdict(counts, over, slack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the counts and the score to this file")
    args = parser.parse_args(argv)
    try:
        found = statuses()
        verdict = judge(found, load_budget())
        floors = load_floors()
    except BudgetError as exc:
        print(f"mutation budget: {exc}", file=sys.stderr)
        return 2
    counts = verdict.counts
    killed, total = counts.get("killed", 0), counts["mutants"]
    score = killed / total if total else 0.0
    print(f"{killed} of {total} mutants killed ({score:.1%}); {counts.get('survived', 0)} survived")
    scores = package_scores(found)
    for package, score in scores.items():
        floor = floors.get(package)
        raise_it = f" (floor {floor:.1%}: raise it)" if floor is not None and score > floor else ""
        print(f"  {package}: {score:.1%} killed{raise_it}")
    low = below_floor(scores, floors)
    for package, (floor, score) in sorted(low.items()):
        print(f"BELOW THE FLOOR {package}: {score:.1%} killed, the budget says at least {floor:.1%}")
    for function, (allowed, survived) in sorted(verdict.slack.items()):
        print(f"tighten the budget: {function} allows {allowed}, {survived} survived")
    for function, names in sorted(verdict.over.items()):
        print(f"OVER BUDGET {function}: {len(names)} survived")
        for name in names:
            print(f"    {name}: {mutated_line(mutmut('show', name))}")
    if args.json:
        args.json.write_text(json.dumps({**counts, "scores": scores}, indent=2) + "\n")
    return 1 if verdict.over or low else 0


if __name__ == "__main__":
    sys.exit(main())
