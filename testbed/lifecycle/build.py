"""Deterministic Lambda bundle: same sources and requirements give the same zip, byte for byte."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from testbed.exceptions import TestbedError
from testbed.paths import BUILD_DIR, LAMBDA_ZIP, ROOT

logger = logging.getLogger(__name__)

PACKAGES = ("processor", "telemetry")
REQUIREMENTS = ROOT / "processor" / "requirements.txt"
# Lambda's python3.12 runtime on x86_64; every dependency must be a pure-Python wheel.
TARGET_PYTHON = "3.12"
TARGET_PLATFORM = "manylinux2014_x86_64"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")


class BuildError(TestbedError):
    """The bundle cannot be built as a single pure-Python zip."""


def _install_dependencies() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    target = BUILD_DIR / f"deps-{digest}"
    if target.is_dir():
        return target
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # a folder of its own: another build may be installing the same requirements right now
    staging = Path(tempfile.mkdtemp(prefix=f"deps-{digest}.", suffix=".tmp", dir=BUILD_DIR))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--only-binary=:all:",
        "--platform",
        TARGET_PLATFORM,
        "--python-version",
        TARGET_PYTHON,
        "--implementation",
        "cp",
        "--target",
        str(staging),
        "-r",
        str(REQUIREMENTS),
    ]
    try:
        subprocess.run(cmd, check=True)
        native = [p for p in staging.rglob("*") if p.suffix in NATIVE_SUFFIXES]
        if native:
            raise BuildError(f"native code in the bundle's dependencies: {[str(p) for p in native[:5]]}")
        staging.rename(target)
    except OSError:
        if not target.is_dir():  # not a concurrent build that finished first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _files(deps: Path) -> list[tuple[str, Path]]:
    entries: list[tuple[str, Path]] = []
    for base, roots in ((deps, sorted(deps.iterdir())), (ROOT, [ROOT / p for p in PACKAGES])):
        for root in roots:
            paths = [root] if root.is_file() else sorted(root.rglob("*"))
            for path in paths:
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                    entries.append((path.relative_to(base).as_posix(), path))
    return sorted(entries)


def build(output: Path = LAMBDA_ZIP) -> Path:
    """Write the zip with sorted entries, fixed timestamps and modes; return its path."""
    deps = _install_dependencies()
    output.parent.mkdir(parents=True, exist_ok=True)
    # written beside the output under a name of its own, then renamed: a stack being deployed
    # never reads half a zip, and builds running at once do not write into each other's file
    fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bundle:
            for entry, path in _files(deps):
                info = zipfile.ZipInfo(entry, date_time=ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                bundle.writestr(info, path.read_bytes(), compresslevel=9)
        tmp.chmod(0o644)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("built %s (sha256 %s)", output, hashlib.sha256(output.read_bytes()).hexdigest())
    return output
