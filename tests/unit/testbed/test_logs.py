"""Following log files as servers write, rotate and truncate them (testbed/operate/logs.py)."""

from __future__ import annotations

from pathlib import Path

from testbed.operate.logs import FileSource, follow, tail


def test_tail_shows_the_last_lines_of_each_source_with_its_prefix(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("".join(f"a{i}\n" for i in range(10)))
    (tmp_path / "b.log").write_text("b0\n")
    sources = [FileSource("emulator", tmp_path / "a.log"), FileSource("bridge", tmp_path / "b.log")]
    assert tail(sources, 2) == ["emulator | a8", "emulator | a9", "bridge   | b0"]
    quiet = [FileSource("broker", tmp_path / "not-yet.log"), *sources]
    assert tail(quiet, 1)[0] == "broker   | (no lines yet)"


def test_only_new_complete_lines_are_read_and_a_half_written_one_waits(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("old\n")
    source = FileSource("broker", log)
    source.last(10)
    with open(log, "a") as out:
        out.write("first\nsecond half")
    assert source.new() == ["first"]
    with open(log, "a") as out:
        out.write(" written\n")
    assert source.new() == ["second half written"]
    assert source.new() == []


def test_a_truncated_or_replaced_file_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("a long line before the restart\n")
    source = FileSource("emulator", log)
    source.last(10)
    log.write_text("new\n")  # the server restarted and truncated its log
    assert source.new() == ["new"]


def test_a_missing_file_reads_as_empty_until_it_appears(tmp_path: Path) -> None:
    source = FileSource("bridge", tmp_path / "bridge.log")
    assert source.last(5) == [] and source.new() == []
    (tmp_path / "bridge.log").write_text("started\n")
    assert source.new() == ["started"]


def test_follow_yields_lines_as_they_are_written_until_stopped(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("")
    sources = [FileSource("emulator", log)]
    writes = iter(["one\n", "two\nthree\n"])
    polls = []

    def sleep(_: float) -> None:
        polls.append(1)
        with open(log, "a") as out:
            out.write(next(writes, ""))

    lines = list(follow(sources, stop=lambda: len(polls) >= 3, sleep=sleep))
    assert lines == ["emulator | one", "emulator | two", "emulator | three"]
