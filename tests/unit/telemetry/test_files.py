"""Reading a file someone else wrote reads at most a bound, and only a regular file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from telemetry.files import InputFileError, read_bounded


def test_a_regular_file_within_the_bound_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100) == b"x" * 100


def test_a_file_over_the_bound_is_refused_after_reading_only_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(b"x" * 101)
    with pytest.raises(InputFileError, match="larger than 100 bytes"):
        read_bounded(path, 100)


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_a_symlink_to_an_endless_device_is_refused(tmp_path: Path, target: str) -> None:
    path = tmp_path / "f.json"
    path.symlink_to(target)
    with pytest.raises(InputFileError, match="is not a regular file"):
        read_bounded(path, 10**12)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    os.mkfifo(path)
    with pytest.raises(InputFileError, match="is not a regular file"):
        read_bounded(path, 100)


def test_a_missing_file_is_the_usual_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "none.json", 100)
