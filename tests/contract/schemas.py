"""Validate a file against one of check-jsonschema's built-in schemas, and show the check can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def validate(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker, "check-jsonschema is a dev dependency"
    return subprocess.run([checker, "--builtin-schema", schema, str(path)], capture_output=True, text=True)


def assert_valid_and_broken_copy_refused(path: Path, schema: str, broken: dict[Any, Any], tmp_path: Path) -> None:
    """`path` passes `schema`; `broken` (a copy with one mistake) written beside it does not."""
    result = validate(path, schema)
    assert result.returncode == 0, result.stdout + result.stderr
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump(broken))
    assert validate(copy, schema).returncode != 0, "the schema check can fail"
