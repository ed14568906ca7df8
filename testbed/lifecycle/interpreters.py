"""Finding a given Python on this machine: LocalStack runs on 3.13, Lambda's python3.12 runtime on 3.12.

Looked for the way users would expect: a named interpreter (`PYTHON_3_13=/path/to/python`), then
pyenv's versions, then `python3.13` on PATH. `python -m testbed.lifecycle.interpreters 3.13` prints
the one found (the Makefile makes venvs with it) or says how to get one, exit 1.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from testbed.exceptions import TestbedError
from toolkit.settings import SETTINGS, python_interpreter

INSTALL = {
    "pyenv": "pyenv install {version}",
    "Debian/Ubuntu": "sudo apt-get install python{version} python{version}-venv (deadsnakes PPA on Ubuntu)",
    "macOS": "brew install python@{version}",
}


class InterpreterError(TestbedError):
    """No interpreter of the version asked for (the message names how to get one)."""


def setting(version: str) -> str:
    """The environment variable that names the interpreter of `version` (PYTHON_3_13)."""
    return python_interpreter(version).name


def _pyenv_versions(version: str) -> list[Path]:
    roots = [SETTINGS["PYENV_ROOT"].text(), str(Path.home() / ".pyenv")]
    if shutil.which("pyenv"):
        found = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, check=False, timeout=30
        ).stdout.strip()
        roots.insert(0, found)
    candidates: list[Path] = []
    for root in (Path(r) for r in dict.fromkeys(roots) if r):
        # 3.13.0 and 3.13.10 alike, newest patch first
        found_versions = sorted(
            root.glob(f"versions/{version}.*/bin/python{version}"),
            key=lambda p: [int(part) for part in p.parts[-3].split(".") if part.isdigit()],
            reverse=True,
        )
        candidates += found_versions
    return candidates


def _is_version(python: str, version: str) -> bool:
    try:
        out = subprocess.run(
            # Debian ships ensurepip apart (python3.X-venv): without it `-m venv` fails later
            [python, "-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def find_python(version: str) -> str:
    """The path of a working Python `version` (with venv), or InterpreterError naming the fix."""
    named = python_interpreter(version).raw()
    if named:
        if _is_version(named, version):
            return named
        raise InterpreterError(
            f"{setting(version)}={named} is not a working Python {version} (with the venv module). "
            f"Point {setting(version)} at one, or unset it to look for one"
        )
    on_path = shutil.which(f"python{version}")
    for candidate in [*(str(p) for p in _pyenv_versions(version)), *([on_path] if on_path else [])]:
        if _is_version(candidate, version):
            return candidate
    ways = "; ".join(f"{where}: {how.format(version=version)}" for where, how in INSTALL.items())
    raise InterpreterError(
        f"no Python {version} found (looked at {setting(version)}, pyenv's versions and python{version} on PATH). "
        f"Install one ({ways}) or name it: {setting(version)}=/path/to/python{version}"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m testbed.lifecycle.interpreters X.Y", file=sys.stderr)
        return 2
    try:
        print(find_python(args[0]))
    except InterpreterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
