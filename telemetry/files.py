"""Reading a file that someone else wrote (a summary, a manifest, a fleet, a price file) without
letting it choose how much is read: regular files only, at most a bound."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class InputFileError(OSError):
    """A file that is not a regular file, or larger than the reader takes."""


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of regular file `path`, refused if it holds more than `limit`. A FIFO, a device or a
    symlink to one (/dev/zero) is refused without blocking on it or reading it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputFileError(f"{path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputFileError(f"{path} is larger than {limit:,} bytes")
    return data
