"""This repository's build of its function, handed to its Terraform through the testbed's variables."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def testbed_variables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    bundle = tmp_path_factory.mktemp("build") / "store.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(HERE / "functions" / "store.py", "store.py")
    return {"function_zip": str(bundle)}
