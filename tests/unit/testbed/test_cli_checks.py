"""A wrong name on the command line is refused before anything starts: no emulator, no state, no apply."""

from __future__ import annotations

import argparse
import inspect
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from telemetry.outputs import StackOutputs
from testbed import cli
from testbed.cli import common
from testbed.exceptions import TestbedError
from testbed.operate.env import dotenv_lines
from testbed.runs.provenance import REPORT_SCHEMA_VERSION


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, io.StringIO]:
    """The embedded backend's state in a folder that must stay absent, and the CLI's printed output."""
    state = tmp_path / "state"
    monkeypatch.setenv("EMBEDDED_STATE_DIR", str(state))
    printed = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=printed, width=1000))
    return state, printed


def test_an_unknown_scenario_is_named_with_the_shipped_ones(run: tuple[Path, io.StringIO]) -> None:
    state, printed = run
    assert cli.main(["simulate", "nosuch"]) == 1
    shipped = "api-chaos, aws-quotas, burst, chaos, faults, smoke, soak, steady"
    assert f"no scenario 'nosuch'; shipped: {shipped}" in printed.getvalue()
    assert not state.exists(), "nothing was started"


def test_a_scenario_whose_fleet_is_broken_is_refused_before_the_stack_starts(
    run: tuple[Path, io.StringIO], tmp_path: Path
) -> None:
    state, printed = run
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("devices: [unclosed\n")
    scenario = tmp_path / "broken.yaml"
    scenario.write_text(f"name: broken\nfleet: {fleet}\nduration_s: 5\n")
    assert cli.main(["simulate", str(scenario)]) == 1
    assert f"{scenario}: {fleet} is not valid YAML" in printed.getvalue()
    assert not state.exists()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "INGRESS",
            "carrier-pigeon",
            "INGRESS=carrier-pigeon is not available on BACKEND=embedded; choose one of direct, sqs, naive, iot",
        ),
        ("IAM", "sometimes", "IAM=sometimes is not a mode; choose one of off, enforce"),
    ],
)
def test_an_unknown_mode_is_refused_before_the_stack_starts(
    variable: str, value: str, message: str, run: tuple[Path, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, printed = run
    monkeypatch.setenv(variable, value)
    assert cli.main(["up"]) == 1
    assert message in printed.getvalue()
    assert not state.exists()


def test_a_benchmark_of_an_unknown_ingress_mode_is_refused_before_the_stack_starts(
    run: tuple[Path, io.StringIO],
) -> None:
    state, printed = run
    assert cli.main(["bench-ingress", "--modes", "direct,bogus"]) == 1
    assert "INGRESS=bogus is not available on BACKEND=embedded" in printed.getvalue()
    assert not state.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["load", "--duration", "-5"],
        ["load", "--duration", "nan"],
        ["bench", "--duration", "0"],
        ["bench-simulator", "--workers", "0"],
        ["bench-ingress", "--duration", "inf"],
        ["logs", "--since", "-1"],
        ["logs", "--limit", "many"],
        ["provision", "--count", "0"],
    ],
)
def test_a_number_out_of_range_is_refused_by_the_parser(
    argv: list[str], run: tuple[Path, io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    state, _ = run
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert f"argument {argv[1]}" in capsys.readouterr().err
    assert not state.exists()


def test_text_from_a_report_is_printed_as_it_is_not_as_markup(tmp_path: Path, run: tuple[Path, io.StringIO]) -> None:
    """A `[` in a summary's or price file's text crashed the CLI with a MarkupError."""
    _, printed = run
    report = {
        "scenario": "[/] [bold]x",
        "provenance": {"report_schema": REPORT_SCHEMA_VERSION},
        "counts": {"publishes": "[red]"},
        "e2e_latency_ms": {"p50": 1, "p95": 2, "p99": 3},
        "passed": True,
    }
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "[/] [bold]x" in printed.getvalue() and "[red]" in printed.getvalue()


def test_an_arn_is_printed_as_it_is_not_as_an_emoji() -> None:
    outputs = StackOutputs(
        ingest_queue_url="q",
        dlq_url="d",
        processor_function_name="f",
        iot_rule_name="r",
        iot_rule_sql="s",
        region="us-east-1",
        signing_secret_arn="arn:x:secret:k",
    )
    with common.console.capture() as captured:
        common.print_outputs(outputs)
    assert ":secret:" in captured.get()


def test_output_piped_to_a_file_is_neither_wrapped_nor_cut() -> None:
    """A CI log or `| tee` gets whole queue URLs and whole lines, not rich's 80 columns."""
    url = "http://127.0.0.1:4566/000000000000/" + "q" * 150
    script = (
        "import logging, sys\n"
        "from rich.table import Table\n"
        "from testbed.cli import common\n"
        "table = Table()\n"
        "table.add_column('queue')\n"
        f"table.add_row({url!r})\n"
        "common.console.print(table)\n"
        "common.console.print('word ' * 60)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert any(url in line for line in lines), out
    assert ("word " * 60).strip() in out.replace("\n", "|"), "one line, not wrapped"
    (row,) = [line for line in lines if url in line]
    assert len(row.rstrip()) <= len(url) + 4, "a table is as wide as its content, not the console"


def test_every_bad_setting_in_the_environment_is_named_before_anything_starts(
    run: tuple[Path, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, printed = run
    monkeypatch.setenv("MQTT_PORT", "18830000")
    monkeypatch.setenv("TESTBED_TERRAFORM_TIMEOUT_S", "soon")
    monkeypatch.setenv("LOCALSTACK_RUNNER", "podman")
    assert cli.main(["up"]) == 1
    said = printed.getvalue()
    assert "MQTT_PORT='18830000': give a port number from 1 to 65535" in said
    assert "TESTBED_TERRAFORM_TIMEOUT_S='soon': give a number of seconds above 0" in said
    assert "LOCALSTACK_RUNNER='podman': choose one of auto, docker, host" in said
    assert not state.exists()


def test_every_command_that_prints_a_table_can_print_json_instead() -> None:
    """A script reads --json, not rich's table; a command that shows a table offers it (or prints a
    JSON line after its table, as the benchmarks do). The demo is a walk-through a person watches;
    its report.json is what a script reads."""
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    without = []
    for name, sub in commands.choices.items():
        source = inspect.getsource(sub.get_default("func"))
        shows_a_table = "Table(" in source or "print_outputs(" in source or "print_table(" in source
        has_json = any("--json" in a.option_strings for a in sub._actions) or "print_rows(" in source
        if shows_a_table and not has_json and name != "demo":
            without.append(name)
    assert without == []


def test_compare_prints_its_rows_as_json_for_a_script(
    tmp_path: Path, run: tuple[Path, io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    for name, published in (("a", 10), ("b", 12)):
        (tmp_path / name).mkdir()
        report = {
            "scenario": "smoke",
            "provenance": {"report_schema": REPORT_SCHEMA_VERSION},
            "counts": {"publishes": published},
            "passed": True,
            "e2e_latency_ms": {"p50": 1, "p95": 2, "p99": 3},
        }
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    assert cli.main(["compare", first, second, "--json"]) == 0
    rows = {row[""]: (row[first], row[second]) for row in json.loads(capsys.readouterr().out)}
    assert rows["publishes"] == (10, 12)


def test_env_prints_an_env_file_for_github_and_docker(
    run: tuple[Path, io.StringIO], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINISTACK_PORT", "45999")
    assert cli.main(["env", "--dotenv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "AWS_ENDPOINT_URL=http://127.0.0.1:45999" in lines and "LOCALSTACK_HOST=127.0.0.1:45999" in lines
    assert all(re.fullmatch(r"[A-Z_0-9]+=\S*", line) for line in lines), lines
    with pytest.raises(TestbedError, match="line break"):
        dotenv_lines({"A": "one\nB=two"})


def test_a_report_of_another_schema_is_refused_not_compared_as_if_its_counts_meant_the_same(
    tmp_path: Path, run: tuple[Path, io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    old = {"scenario": "smoke", "published": 735, "acked": 724, "provenance": {"report_schema": 2}}
    new = {"scenario": "smoke", "counts": {}, "provenance": {"report_schema": REPORT_SCHEMA_VERSION}}
    for name, report in (("old", old), ("new", new), ("none", {"scenario": "smoke"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    _, printed = run
    assert cli.main(["compare", str(tmp_path / "old"), str(tmp_path / "new")]) == 1
    assert f"is a report of schema 2; this testbed reads schema {REPORT_SCHEMA_VERSION}" in printed.getvalue()
    assert cli.main(["compare", str(tmp_path / "new"), str(tmp_path / "none")]) == 1
    assert "schema unknown (older)" in printed.getvalue()


def test_a_benchmark_table_labels_every_figure_when_rows_differ(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulator bench's first row has no raw-client figures, and a row may list its keys in
    another order: every value sits under its own name."""
    out = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=out, width=200))
    rows = [{"phase": "connections", "cpu": 110}, {"cpu": 44, "phase": "qos0", "over_raw": 3.27}]
    common.print_rows("t", rows)
    header, first, second = (line for line in out.getvalue().splitlines() if "│" in line or "┃" in line)
    cells = [[cell.strip() for cell in line.strip()[1:-1].split(line.strip()[0])] for line in (header, first, second)]
    assert cells == [["phase", "cpu", "over_raw"], ["connections", "110", ""], ["qos0", "44", "3.27"]]
    assert json.loads(capsys.readouterr().out) == rows
