"""`make bench` keeps each run's figures, and `testbed bench compare` sets two runs side by side as
ratios; a history a crash cut short, or one that is not ours, is read around, never trusted."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from testbed import cli
from testbed.bench import history
from testbed.bench.ceiling import grown_emulator
from testbed.bench.history import HistoryError
from testbed.cli import bench as bench_commands
from testbed.cli import common


def result(
    best: float, ceiling: float, cpu: dict[str, float], rss_mb: float | None = 100.0, raw_us: float = 20.0
) -> dict[str, Any]:
    return {
        "emulator_rss_mb_at_start": rss_mb,
        "raw_receive": {"cpu_us_per_msg": raw_us},
        "ceiling": {"combined_msg_s": ceiling},
        "best": {"stored_msg_s": best, "p99_ms": 120.0},
        "of_ceiling": round(best / ceiling, 2),
        "cpu_us_per_msg": cpu,
        "ratio": 9.5,
    }


def test_two_kept_runs_compare_as_ratios_figure_by_figure(tmp_path: Path) -> None:
    history.append(tmp_path, history.entry(result(900, 3000, {"bridge": 130.0, "simulator": 170.0}), "embedded", "m"))
    newer_result = result(1800, 3000, {"bridge": 65.0, "lambda": 250.0}, rss_mb=2500.0, raw_us=30.0)
    history.append(tmp_path, history.entry(newer_result, "embedded", "m"))
    older, newer = history.pick(history.runs(tmp_path))
    rows = {row.figure: row for row in history.compare(older, newer)}
    assert rows["emulator MB at start"].ratio == 25.0, "how grown the emulator was is kept beside the figures"
    assert rows["raw paho receive, us/msg"].ratio == 1.5, "the bridge's yardstick, to tell its cost from the machine's"
    assert rows["best good rate, msg/s"].ratio == 2.0
    assert rows["share of the ceiling"].older == 0.3 and rows["share of the ceiling"].ratio == 2.0
    assert rows["CPU us/msg: bridge"].ratio == 0.5
    assert rows["CPU us/msg: simulator"].newer is None and rows["CPU us/msg: simulator"].ratio is None
    assert rows["CPU us/msg: lambda"].older is None
    assert older["machine"]["cpus"] and older["commit"]


@pytest.mark.parametrize(("rss_mb", "warned"), [(None, False), (100.0, False), (1024.0, False), (1024.5, True)])
def test_a_grown_emulator_is_named_before_the_run_with_what_to_do(rss_mb: float | None, warned: bool) -> None:
    warning = grown_emulator(rss_mb)
    assert (warning is not None) == warned
    if warning:
        assert "1,024 MB" in warning or "1,025 MB" in warning
        assert "make clean && make up" in warning


def test_a_line_cut_short_or_foreign_is_left_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    history.append(tmp_path, history.entry(result(100, 1000, {}), "embedded", "m"))
    with (tmp_path / history.HISTORY_FILE).open("a") as out:
        out.write('{"ceiling_msg_s": 5, "best_ms\n[1, 2]\n{"not": "a run"}\n\xff\xfe\n')
    history.append(tmp_path, history.entry(result(200, 1000, {}), "localstack", "l"))
    kept = history.runs(tmp_path)
    assert [run["backend"] for run in kept] == ["embedded", "localstack"]
    assert caplog.text.count("left out") == 4


@pytest.mark.parametrize(("older", "newer"), [(0, 1), (1, 3), (3, 2)])
def test_a_run_number_the_history_does_not_hold_is_named(tmp_path: Path, older: int, newer: int) -> None:
    for best in (100, 200):
        history.append(tmp_path, history.entry(result(best, 1000, {}), "embedded", "m"))
    with pytest.raises(HistoryError, match="the history holds runs 1 to 2"):
        history.pick(history.runs(tmp_path), (older, newer))


def test_compare_before_two_runs_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match=r"0 bench run\(s\) kept so far: `make bench` twice"):
        history.pick(history.runs(tmp_path))


def test_a_history_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / history.HISTORY_FILE).symlink_to("/dev/zero")
    with pytest.raises(OSError, match="not a regular file"):
        history.runs(tmp_path)


def test_the_cli_prints_both_runs_and_their_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    history.append(tmp_path, history.entry(result(900, 3000, {"bridge": 130.0}), "embedded", "ministack 1.5.33"))
    history.append(tmp_path, history.entry(result(1800, 3000, {"bridge": 65.0}), "embedded", "ministack 1.5.33"))
    printed = io.StringIO()
    monkeypatch.setattr(bench_commands, "REPORTS_DIR", tmp_path)
    monkeypatch.setattr(common, "console", Console(file=printed, width=200))
    assert cli.main(["bench", "compare"]) == 0
    out = printed.getvalue()
    assert "best good rate, msg/s" in out and "2x" in out and "0.5x" in out
    assert "ministack 1.5.33 on" in out
    assert json.loads((tmp_path / history.HISTORY_FILE).read_text().splitlines()[0])["best_msg_s"] == 900


def test_a_run_kept_after_a_line_cut_short_is_read_whole(tmp_path: Path) -> None:
    (tmp_path / history.HISTORY_FILE).write_text('{"ceiling_msg_s": 5, "best')
    history.append(tmp_path, history.entry(result(300, 1000, {}), "embedded", "m"))
    assert [run["best_msg_s"] for run in history.runs(tmp_path)] == [300]


@pytest.mark.parametrize(
    "line",
    [
        '{"ceiling_msg_s": 1, "when": "w", "commit": "c", "emulator": "e", "machine": [], "cpu_us_per_msg": {}}',
        '{"ceiling_msg_s": 1, "commit": "c", "emulator": "e", "machine": {}, "cpu_us_per_msg": {}}',
        '{"ceiling_msg_s": 1, "when": "w", "commit": "c", "emulator": "e", "machine": {}, "cpu_us_per_msg": 5}',
    ],
)
def test_a_run_missing_what_compare_prints_is_left_out(tmp_path: Path, line: str) -> None:
    (tmp_path / history.HISTORY_FILE).write_text(line + "\n")
    assert history.runs(tmp_path) == []


def test_a_figure_too_large_for_a_float_is_shown_as_none() -> None:
    older = {"ceiling_msg_s": 10**400, "cpu_us_per_msg": {}}
    newer = {"ceiling_msg_s": 5, "cpu_us_per_msg": {}}
    (ceiling, *_) = history.compare(older, newer)
    assert ceiling.older is None and ceiling.ratio is None
