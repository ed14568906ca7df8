"""Where the project keeps its sources, build output and local state.

From a checkout, everything sits beside the sources (`build/`, `.testbed/`, `reports/`). Installed
from a wheel, the sources are in site-packages, which is no place to write: the bundle, the state
and the reports then go under the working directory, as for any other tool.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.settings import SETTINGS

# The folder holding the packages (and, in a checkout, pyproject.toml and infra/).
ROOT = Path(__file__).resolve().parent.parent
CHECKOUT = (ROOT / "pyproject.toml").is_file()
WORK_ROOT = ROOT if CHECKOUT else Path.cwd()
# A wheel ships infra/ beside the packages too (see pyproject.toml's package data).
INFRA_DIR = ROOT / "infra"
BUILD_DIR = WORK_ROOT / "build" if CHECKOUT else WORK_ROOT / ".testbed" / "build"
LAMBDA_ZIP = BUILD_DIR / "processor.zip"
REPORTS_DIR = WORK_ROOT / "reports"
# Everything a running stack writes (emulator state, logs, pid files, temp, Terraform state).
STATE_ROOT = SETTINGS["TESTBED_STATE_DIR"].path(WORK_ROOT / ".testbed")
# Each backend's latest parity rows, so one backend's table shows the others' beside its own.
PARITY_DIR = STATE_ROOT / "parity"
MINISTACK_VENV = SETTINGS["MINISTACK_VENV"].path(WORK_ROOT / ".venv-ministack")
