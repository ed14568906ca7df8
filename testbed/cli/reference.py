"""The reference parts of the docs, generated from the code: in docs/configuration.md every
environment variable (toolkit/settings.py) and every option of every command (the tools' own
parsers), in docs/load-runs.md the glossary of counts (toolkit/counts.py).
`python -m testbed.cli.reference` rewrites the blocks in place (`make docs` runs it); a test fails
while they differ from what the code declares."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from ingress.__main__ import build_parser as ingress_parser
from simulator.cli import build_parser as simulator_parser
from testbed.cli import build_parser as testbed_parser
from testbed.paths import ROOT
from toolkit.counts import glossary_markdown
from toolkit.settings import SETTINGS, markdown

CONFIGURATION = ROOT / "docs" / "configuration.md"
LOAD_RUNS = ROOT / "docs" / "load-runs.md"
TABLE_HEAD = ("| option | default | what it sets |", "|---|---|---|")
PROGRAMS: tuple[tuple[str, Callable[[], argparse.ArgumentParser]], ...] = (
    ("testbed", testbed_parser),
    ("simulator", simulator_parser),
    ("ingress", ingress_parser),
)


def _cell(text: object) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _default(action: argparse.Action) -> str:
    """The default as a user would type it; a value the code computes (a parsed address) is not shown."""
    if isinstance(action, argparse._StoreTrueAction) or not isinstance(action.default, str | int | float):
        return ""
    return f"`{_cell(action.default)}`" if str(action.default) else ""


def _options(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = ", ".join(action.option_strings) or action.dest
        help_text = (action.help or "").replace("(default: %(default)s)", "").strip()
        shown = help_text % {"default": action.default} if "%(" in help_text else help_text
        rows.append(f"| `{name}` | {_default(action)} | {_cell(shown)} |")
    return rows


def options_markdown() -> str:
    """Each program's commands and their options, as Markdown tables."""
    out: list[str] = []
    for program, build in PROGRAMS:
        parser = build()
        out += [f"### `bin/{program}`", "", *TABLE_HEAD, *_options(parser), ""]
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                out += [f"#### `bin/{program} {name}`", "", _cell(helps.get(name, "")), ""]
                rows = _options(sub)
                out += [*TABLE_HEAD, *rows, ""] if rows else []
    return "\n".join(out)


def _replace(text: str, marker: str, block: str) -> str:
    start, end = f"<!-- {marker}:start -->\n", f"<!-- {marker}:end -->"
    head, rest = text.split(start, 1)
    return head + start + block + rest[rest.index(end) :]


@contextlib.contextmanager
def _declared_defaults() -> Iterator[None]:
    """The parsers as a fresh shell builds them: a default read from the environment (BACKEND) is
    the declared one, whatever this shell has set."""
    saved = {name: os.environ.pop(name) for name in SETTINGS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def rendered(text: str) -> str:
    """docs/configuration.md's text with both generated blocks as the code declares them."""
    with _declared_defaults():
        return _replace(_replace(text, "env", markdown()), "options", options_markdown())


def with_glossary(text: str) -> str:
    """docs/load-runs.md's text with the glossary of counts as the code declares it."""
    return _replace(text, "counts", glossary_markdown())


if __name__ == "__main__":
    CONFIGURATION.write_text(rendered(CONFIGURATION.read_text()))
    LOAD_RUNS.write_text(with_glossary(LOAD_RUNS.read_text()))
    sys.exit(0)
