"""Finding the Pythons the LocalStack backend needs, or naming how to get one."""

from __future__ import annotations

import sys

import pytest

from testbed.lifecycle.interpreters import InterpreterError, find_python, main

THIS = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_a_named_interpreter_of_the_version_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"PYTHON_{THIS.replace('.', '_')}", sys.executable)
    assert find_python(THIS) == sys.executable


def test_a_named_interpreter_that_is_not_that_version_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_3_99", sys.executable)
    with pytest.raises(InterpreterError, match=r"PYTHON_3_99=.* is not a working Python 3.99.*Point PYTHON_3_99"):
        find_python("3.99")


def test_no_interpreter_of_a_version_names_every_way_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PYTHON_3_99", raising=False)
    assert main(["3.99"]) == 1
    err = capsys.readouterr().err
    assert "no Python 3.99 found" in err and "pyenv install 3.99" in err and "PYTHON_3_99=/path/to/python3.99" in err
