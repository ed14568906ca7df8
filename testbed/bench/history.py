"""Every `make bench` run kept as one line of a history file, and two runs compared as ratios.

A rate measured on one machine means little on another (the same commit runs 3-4x slower on some
of these machines), so the comparison is of ratios: each figure of the newer run over the older's,
and the rate as a share of the emulator's ceiling measured in the same run.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telemetry.files import read_bounded
from testbed.exceptions import TestbedError
from testbed.paths import ROOT

logger = logging.getLogger(__name__)

HISTORY_FILE = "bench-history.jsonl"
# a run's line is about a kilobyte; the file is read whole to pick runs out of it
MAX_HISTORY_BYTES = 16 * 1024 * 1024


class HistoryError(TestbedError):
    """No such run in the history, or no history yet."""


@dataclass(frozen=True)
class Compared:
    """One figure of two runs, and the newer over the older (None where either lacks it)."""

    figure: str
    older: float | None
    newer: float | None

    @property
    def ratio(self) -> float | None:
        if self.older is None or self.newer is None or self.older == 0:
            return None
        return round(self.newer / self.older, 2)


def _commit() -> str:
    try:
        answer = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return answer.stdout.strip() if answer.returncode == 0 else "unknown"


def entry(result: dict[str, Any], backend: str, emulator: str) -> dict[str, Any]:
    """What one run keeps: where and when it ran, the ceiling, the ratio, p99 and CPU by process."""
    best = result.get("best") or {}
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "system": platform.platform(),
        },
        "backend": backend,
        "emulator": emulator,
        "ceiling_msg_s": result["ceiling"]["combined_msg_s"],
        "best_msg_s": best.get("stored_msg_s"),
        "of_ceiling": result.get("of_ceiling"),
        "p99_ms": best.get("p99_ms"),
        "cpu_us_per_msg": result.get("cpu_us_per_msg", {}),
        "design_over_naive": result.get("ratio"),
        "emulator_rss_mb_at_start": result.get("emulator_rss_mb_at_start"),
        "raw_receive_us_per_msg": (result.get("raw_receive") or {}).get("cpu_us_per_msg"),
    }


def append(folder: Path, kept: dict[str, Any]) -> Path:
    """Add one run's line (a line cut short by a crash is skipped when read)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HISTORY_FILE
    with path.open("ab+") as out:
        cut_short = False
        if out.seek(0, os.SEEK_END) > 0:  # a line a crash left without its end: the new one starts anew
            out.seek(-1, os.SEEK_END)
            cut_short = out.read(1) != b"\n"
        out.write((b"\n" if cut_short else b"") + json.dumps(kept, sort_keys=True).encode() + b"\n")
    return path


def runs(folder: Path) -> list[dict[str, Any]]:
    """Every run kept, oldest first; a line that is not a run is named in the log and left out."""
    path = folder / HISTORY_FILE
    if not path.exists():
        return []
    kept = []
    for number, line in enumerate(read_bounded(path, MAX_HISTORY_BYTES).decode(errors="replace").splitlines(), 1):
        try:
            run = json.loads(line)
            if not isinstance(run, dict) or "ceiling_msg_s" not in run:
                raise ValueError("not a bench run")
            if not all(isinstance(run.get(key), str) for key in ("when", "commit", "emulator")):
                raise ValueError("a run without its time, commit or emulator")
            if not isinstance(run.get("machine"), dict) or not isinstance(run.get("cpu_us_per_msg"), dict):
                raise ValueError("a run whose machine or CPU figures are not a table")
        except ValueError as exc:
            logger.warning("%s line %d left out: %s", path, number, exc)
            continue
        kept.append(run)
    return kept


def _number(value: Any) -> float | None:
    """A figure, or None for what is not one (text, a bool, an integer too large for a float)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def compare(older: dict[str, Any], newer: dict[str, Any]) -> list[Compared]:
    """The headline figures and each process's CPU per message, newer over older."""
    rows = [
        Compared(figure, _number(older.get(key)), _number(newer.get(key)))
        for figure, key in (
            ("emulator ceiling, msg/s", "ceiling_msg_s"),
            ("best good rate, msg/s", "best_msg_s"),
            ("share of the ceiling", "of_ceiling"),
            ("p99 at the best rate, ms", "p99_ms"),
            ("design over naive", "design_over_naive"),
            ("emulator MB at start", "emulator_rss_mb_at_start"),
            ("raw paho receive, us/msg", "raw_receive_us_per_msg"),
        )
    ]
    old_cpu, new_cpu = older.get("cpu_us_per_msg") or {}, newer.get("cpu_us_per_msg") or {}
    for process in sorted(set(old_cpu) | set(new_cpu)):
        rows.append(Compared(f"CPU us/msg: {process}", _number(old_cpu.get(process)), _number(new_cpu.get(process))))
    return rows


def pick(kept: list[dict[str, Any]], numbers: tuple[int, int] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two runs by their number in the history (1 is the oldest); None: the last two."""
    if len(kept) < 2:
        raise HistoryError(f"{len(kept)} bench run(s) kept so far: `make bench` twice, then compare")
    older, newer = numbers if numbers is not None else (len(kept) - 1, len(kept))
    for number in (older, newer):
        if not 1 <= number <= len(kept):
            raise HistoryError(f"no run {number}: the history holds runs 1 to {len(kept)}")
    return kept[older - 1], kept[newer - 1]
