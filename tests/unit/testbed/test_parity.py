"""Each parity row follows what its probe saw: what AWS does gives `same`, what the emulator does
gives `differs` with its consequence, and a probe that saw nothing says so."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from rich.console import Console

from telemetry.outputs import StackOutputs
from telemetry.topics import DEVICE_TOPIC
from testbed.parity import probes
from testbed.parity.probes import (
    AlarmSeen,
    BrokerSeen,
    FirehoseSeen,
    LambdaSeen,
    LimitsSeen,
    RuleSeen,
    judge_alarm,
    judge_broker,
    judge_firehose,
    judge_lambda,
    judge_limits,
    judge_rule,
)
from testbed.parity.probes import common as common_probes
from testbed.parity.probes import function as function_probes
from testbed.parity.report import PROBES, Measured, print_table, run_probes, save, saved_others
from testbed.parity.throwaway import Throwaway
from testbed.parity.types import ProbeContext, Row, Verdict


def _rows(rows: list[Row]) -> dict[str, Row]:
    return {row.feature: row for row in rows}


def test_firehose_that_buffers_and_compresses_is_aws() -> None:
    rows = _rows(judge_firehose(FirehoseSeen(3, 0, None, 5, 60, "GZIP")))
    assert rows["Firehose buffering"].verdict is Verdict.SAME
    assert "5 MB or 60 s" in rows["Firehose buffering"].aws
    # nothing written yet, so nothing to look at: not a guess either way
    assert rows["Firehose GZIP"].verdict is Verdict.UNKNOWN


def test_firehose_writing_each_record_at_once_uncompressed_differs() -> None:
    rows = _rows(judge_firehose(FirehoseSeen(3, 3, False, 5, 60, "GZIP")))
    assert rows["Firehose buffering"].verdict is Verdict.DIFFERS
    assert rows["Firehose buffering"].backend == "3 object(s) for 3 records within 3 s"
    assert rows["Firehose GZIP"].verdict is Verdict.DIFFERS
    assert "plain JSON here and GZIP on AWS" in rows["Firehose GZIP"].consequence
    assert _rows(judge_firehose(FirehoseSeen(3, 1, True, 5, 60, "GZIP")))["Firehose GZIP"].verdict is Verdict.SAME
    unset = _rows(judge_firehose(FirehoseSeen(3, 1, False, 5, 60, "UNCOMPRESSED")))["Firehose GZIP"]
    assert unset.verdict is Verdict.SAME


@pytest.mark.parametrize(
    ("state", "verdict"),
    [("ALARM", Verdict.DIFFERS), ("INSUFFICIENT_DATA", Verdict.SAME), ("OK", Verdict.SAME)],
)
def test_an_alarm_that_fires_on_one_datapoint_of_three_differs(state: str, verdict: Verdict) -> None:
    row = judge_alarm(AlarmSeen(state, 3))
    assert row.verdict is verdict
    assert state in row.backend


AWS_LIKE_LAMBDA = LambdaSeen(
    python="3.12.7",
    reserved_env_error="InvalidParameterValueException",
    processor_reserved_keys=(),
    oversize_invoke_error="RequestEntityTooLargeException",
    throttle_error="TooManyRequestsException",
    batch_size=100,
    batching_window_s=1,
    batches=(100, 50),
    sent=150,
    max_overlap=2,
    alarm_namespaces={"AWS/Lambda": ("errors",), "AWS/SQS": ("dlq-depth", "age")},
    published=("AWS/Lambda", "AWS/SQS"),
)


def test_a_lambda_service_that_behaves_as_documented_is_the_same_on_every_row() -> None:
    rows = judge_lambda(AWS_LIKE_LAMBDA)
    assert [r.verdict for r in rows] == [Verdict.SAME] * 7
    assert all(r.consequence == probes.NONE_HERE for r in rows)


def test_each_lambda_difference_changes_its_own_row() -> None:
    emulator = LambdaSeen(
        python="3.11.2",
        reserved_env_error=None,
        processor_reserved_keys=("AWS_REGION",),
        oversize_invoke_error=None,
        throttle_error=None,
        batch_size=100,
        batching_window_s=1,
        batches=(10,) * 15,
        sent=150,
        max_overlap=5,
        alarm_namespaces={"AWS/Lambda": ("errors",), "AWS/SQS": ("dlq-depth", "age")},
        published=("AWS/Lambda",),
    )
    rows = _rows(judge_lambda(emulator))
    assert {f: r.verdict for f, r in rows.items()} == dict.fromkeys(rows, Verdict.DIFFERS)
    assert "your processor sets: AWS_REGION" in rows["Reserved Lambda env keys"].consequence
    assert rows["Lambda runtime"].backend == "ran it on Python 3.11.2"
    assert rows["Lambda throttling"].backend == "ran the invocation"
    assert "10x as often" in rows["SQS event source batches"].consequence
    assert rows["SQS event source concurrency"].backend == "at most 5 at once"
    assert "dlq-depth, age" in rows["Metrics behind your alarms"].consequence


def test_a_lambda_probe_that_saw_no_batch_says_not_probed() -> None:
    seen = LambdaSeen(**{**vars(AWS_LIKE_LAMBDA), "batches": (), "max_overlap": 0, "alarm_namespaces": {}})
    rows = _rows(judge_lambda(seen))
    for feature in ("SQS event source batches", "SQS event source concurrency", "Metrics behind your alarms"):
        assert rows[feature].verdict is Verdict.UNKNOWN


def test_a_probe_function_that_names_no_python_says_not_probed() -> None:
    assert _rows(judge_lambda(LambdaSeen(**{**vars(AWS_LIKE_LAMBDA), "python": ""})))["Lambda runtime"].verdict is (
        Verdict.UNKNOWN
    )


def test_small_batches_without_a_batching_window_are_what_aws_does() -> None:
    seen = LambdaSeen(**{**vars(AWS_LIKE_LAMBDA), "batch_size": 10, "batching_window_s": 0, "batches": (7, 10, 10)})
    assert _rows(judge_lambda(seen))["SQS event source batches"].verdict is Verdict.SAME


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("refused (PUBACK Packet too large)", Verdict.SAME),
        ("refused (disconnected: Packet too large)", Verdict.SAME),
        ("accepted", Verdict.DIFFERS),
        ("no answer", Verdict.UNKNOWN),
    ],
)
def test_the_broker_rows_follow_its_answers(answer: str, verdict: Verdict) -> None:
    rows = _rows(judge_broker(BrokerSeen(answer, answer, iam_enforced=False)))
    assert rows["IoT policy enforcement"].verdict is verdict
    if verdict is Verdict.DIFFERS:
        assert "IAM=enforce" in rows["IoT policy enforcement"].consequence
    assert rows["MQTT payload limit"].verdict is verdict
    assert rows["MQTT payload limit"].backend == answer


def test_limits_refused_are_aws_and_accepted_differ() -> None:
    same = _rows(judge_limits(LimitsSeen("InvalidParameterValue", "ValidationException")))
    assert [r.verdict for r in same.values()] == [Verdict.SAME, Verdict.SAME]
    accepted = _rows(judge_limits(LimitsSeen(None, None)))
    assert [r.verdict for r in accepted.values()] == [Verdict.DIFFERS, Verdict.DIFFERS]
    assert "1,048,576" in accepted["SQS message size"].aws and "409,600" in accepted["DynamoDB item size"].aws


SQL = "SELECT *, topic(2) AS device_id FROM 'sensors/+/telemetry'"


def test_a_rule_output_with_the_topic_level_and_the_payload_is_aws() -> None:
    seen = RuleSeen(SQL, "sensors/d1/telemetry", {"t": 1}, {"t": 1, "device_id": "d1"}, None, "the rule bridge")
    row = judge_rule(seen)
    assert row.verdict is Verdict.SAME
    assert "(topic)" in row.aws


def test_a_rule_output_missing_a_field_or_with_the_wrong_level_differs() -> None:
    wrong = judge_rule(RuleSeen(SQL, "sensors/d1/telemetry", {"t": 1}, {"device_id": "sensors"}, None, "engine"))
    assert wrong.verdict is Verdict.DIFFERS
    assert "t missing" in wrong.backend and "device_id='sensors', not 'd1'" in wrong.backend
    refused = judge_rule(RuleSeen(SQL, "", {}, None, "unsupported function: md5", "engine"))
    assert refused.verdict is Verdict.DIFFERS and "md5" in refused.backend
    assert judge_rule(RuleSeen(SQL, "", {}, None, None, "engine")).verdict is Verdict.UNKNOWN


def test_functions_are_read_from_the_sql() -> None:
    assert probes.rule_functions("SELECT timestamp() AS t, topic(2) AS d, clientid() FROM 'a/+'") == (
        "clientid",
        "timestamp",
        "topic",
    )


@pytest.mark.parametrize(
    ("spans", "overlap"),
    [([], 0), ([(0.0, 1.0), (1.0, 2.0)], 1), ([(0.0, 1.0), (0.5, 1.5), (0.6, 0.7)], 3), ([(0.0, 3.0), (1.0, 2.0)], 2)],
)
def test_overlap_counts_batches_running_at_once(spans: list[tuple[float, float]], overlap: int) -> None:
    assert function_probes.max_overlap(spans) == overlap


def test_a_probe_that_fails_reports_its_rows_as_not_probed_and_the_others_still_run() -> None:
    """A context whose clients all fail: every row says which error stopped its probe."""

    def broken(service: str) -> Any:
        raise ConnectionError(f"{service}: the emulator is gone")

    outputs = StackOutputs("q", "dlq", "fn", "rule", SQL, "us-east-1", archive_stream_name="s")
    topic = DEVICE_TOPIC
    ctx = ProbeContext(broken, outputs, "direct", topic, lambda: None, print, print, False, "p")  # type: ignore[arg-type,return-value]
    rows = run_probes(ctx)
    assert [r.feature for r in rows] == [f for features, _ in PROBES for f in features]
    by = _rows(rows)
    # the rule probe needs no client: it runs the bridge's engine on the deployed SQL
    assert by["Rule SQL"].verdict is Verdict.SAME
    failed = [r for r in rows if r.feature != "Rule SQL"]
    assert all(r.verdict is Verdict.UNKNOWN and r.backend.startswith("probe failed:") for r in failed)


def test_a_size_probe_refused_by_the_policy_says_nothing_about_the_size() -> None:
    seen = BrokerSeen("refused (PUBACK Not authorized)", "refused (PUBACK Not authorized)", iam_enforced=True)
    rows = _rows(judge_broker(seen))
    assert rows["IoT policy enforcement"].verdict is Verdict.SAME
    size = rows["MQTT payload limit"]
    assert size.verdict is Verdict.UNKNOWN and size.backend.startswith("policy refused")


def test_a_rule_the_probe_could_not_move_aside_is_not_probed() -> None:
    seen = RuleSeen("SELECT * FROM '+/x'", "", {}, None, None, "engine", skipped="its FROM has no literal first level")
    row = judge_rule(seen)
    assert row.verdict is Verdict.UNKNOWN and "not run" in row.backend


def test_a_refusal_other_than_the_limits_is_no_observation() -> None:
    """AccessDenied where AWS would answer the limit's own error: the probe fails (not probed), not SAME."""

    def denied() -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "SendMessage")

    def too_long() -> None:
        raise ClientError({"Error": {"Code": "InvalidParameterValue", "Message": "too long"}}, "SendMessage")

    with pytest.raises(ClientError):
        common_probes.refusal(denied, "InvalidParameterValue")
    assert common_probes.refusal(too_long, "InvalidParameterValue") == "InvalidParameterValue"
    assert common_probes.refusal(lambda: None, "InvalidParameterValue") is None


def test_every_deletion_runs_though_one_fails_and_what_is_gone_is_not_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deleted: list[str] = []

    def gone() -> None:
        raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no such"}}, "DeleteLogGroup")

    def broken() -> None:
        raise ConnectionError("the emulator went away")

    with pytest.raises(RuntimeError), Throwaway() as made:
        made.delete("role", lambda: deleted.append("role"))
        made.delete("log group", gone)
        made.delete("queue", broken)
        made.delete("function", lambda: deleted.append("function"))
        raise RuntimeError("the probe failed half way")
    assert deleted == ["function", "role"], "in reverse order, past the one that failed"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["could not delete the probe's queue: the emulator went away"]


def test_saved_results_of_other_backends_are_shown_beside_and_hostile_ones_left_out(tmp_path: Path) -> None:
    """Each emulator's latest rows become a column of the others' tables; a file that is not one
    (fields of the wrong type, markup in a name) is left out or shown as text, never a crash."""
    row = Row("Firehose GZIP", "compresses", "uncompressed objects", Verdict.DIFFERS, "readers differ")
    mine = Measured("ministack-1.5.33", "ministack 1.5.33", "now", (row,))
    theirs = Measured("localstack", "[/]LocalStack [bold]", "2026-12-07 01:00 UTC", (row,))
    save(mine, tmp_path)
    save(theirs, tmp_path)
    (tmp_path / "broken.json").write_text(
        '{"backend": "b", "emulator": "e", "measured": "m", "rows": [{"feature": []}]}'
    )
    (tmp_path / "garbage.json").write_text("[1, 2")
    others = saved_others(tmp_path, mine.backend)
    assert [o.emulator for o in others] == ["[/]LocalStack [bold]"]
    out = StringIO()
    print_table(mine, Console(file=out, width=300), others)
    assert "[/]LocalStack [bold], 2026-12-07 01:00 UTC" in out.getvalue()
    assert "ministack 1.5.33: 1 of 1 behaviours differ" in out.getvalue()
