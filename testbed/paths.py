"""Where the project keeps its sources, build output and local state."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFRA_DIR = ROOT / "infra"
BUILD_DIR = ROOT / "build"
LAMBDA_ZIP = BUILD_DIR / "processor.zip"
# Everything a running stack writes (emulator state, logs, pid files, temp, Terraform state).
STATE_ROOT = Path(os.environ.get("TESTBED_STATE_DIR", ROOT / ".testbed")).resolve()
MINISTACK_VENV = Path(os.environ.get("MINISTACK_VENV", ROOT / ".venv-ministack")).resolve()
