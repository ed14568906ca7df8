"""The manual a user reads: the README (the front door) and the pages under docs/. Documentation tests
read it as one text, so a claim holds wherever it moved."""

from __future__ import annotations

from pathlib import Path

from testbed.paths import ROOT

PAGES: tuple[Path, ...] = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


def manual_text() -> str:
    return "\n".join(page.read_text() for page in PAGES)


def marked_block(marker: str) -> str:
    """The text between `<!-- marker:start -->` and `<!-- marker:end -->`, on whichever page holds it."""
    (found,) = [page for page in PAGES if f"<!-- {marker}:start -->" in page.read_text()]
    return found.read_text().split(f"<!-- {marker}:start -->")[1].split(f"<!-- {marker}:end -->")[0]
