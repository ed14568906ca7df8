"""`make logs`: the emulator's, the broker's, the bridge's and the processor's log lines, one prefix
per source, the last lines of each or followed as they are written (as `docker compose logs -f`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from testbed.stores import log_events, log_line

FOLLOW_INTERVAL_S = 0.5
LAMBDA_SOURCE = "lambda"
NOTHING_YET = "(no lines yet)"


class Source(Protocol):
    name: str

    def last(self, lines: int) -> list[str]: ...

    def new(self) -> list[str]: ...


@dataclass
class FileSource:
    """A server's log file: read from where the last read stopped; a file that shrank was rotated
    or truncated, so it is read again from its start. A line still being written waits for its end."""

    name: str
    path: Path
    offset: int = 0
    partial: bytes = b""

    def last(self, lines: int) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as log:
            tail = deque(log, maxlen=lines)
            self.offset = log.tell()
        return [line.decode(errors="replace").rstrip("\n") for line in tail]

    def new(self) -> list[str]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset, self.partial = 0, b""
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = self.partial + log.read()
            self.offset = log.tell()
        *complete, self.partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in complete]


@dataclass
class LogGroupSource:
    """The processor's CloudWatch log group (what the emulator or Lambda wrote), polled from the
    last event seen; an event at that same millisecond is not shown twice."""

    logs: Any
    group: str
    since_ms: int
    name: str = LAMBDA_SOURCE
    seen: set[Any] = field(default_factory=set)
    failing: bool = False

    def last(self, lines: int) -> list[str]:
        return [log_line(at, message) for at, message in deque(self._read(), maxlen=lines)]

    def new(self) -> list[str]:
        """New lines; while the emulator does not answer (a restart), none, and one note that it does not."""
        try:
            lines = [log_line(at, message) for at, message in self._read()]
        except (BotoCoreError, ClientError) as exc:
            note = f"(cannot read {self.group}: {exc})"
            lines, self.failing = ([note] if not self.failing else []), True
            return lines
        self.failing = False
        return lines

    def _read(self) -> Iterator[tuple[int, str]]:
        for at, event_id, message in list(log_events(self.logs, self.group, self.since_ms)):
            if at == self.since_ms and event_id in self.seen:
                continue
            if at > self.since_ms:
                self.since_ms, self.seen = at, set()
            self.seen.add(event_id)
            yield at, message


def prefixed(name: str, lines: Sequence[str], width: int) -> list[str]:
    return [f"{name:<{width}} | {line}" for line in lines]


def tail(sources: Sequence[Source], lines: int) -> list[str]:
    """The last lines of each source; a source with none says so, so every source shows up."""
    width = max(len(s.name) for s in sources)
    return [out for source in sources for out in prefixed(source.name, source.last(lines) or [NOTHING_YET], width)]


def follow(
    sources: Sequence[Source],
    stop: Callable[[], bool],
    interval_s: float = FOLLOW_INTERVAL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """New lines of every source as they appear, until `stop()` says so."""
    width = max(len(s.name) for s in sources)
    while not stop():
        for source in sources:
            yield from prefixed(source.name, source.new(), width)
        sleep(interval_s)
