"""Rule evaluation against the AWS IoT SQL reference's examples, for the supported subset."""

from __future__ import annotations

import json

import pytest

from ingress.rule import Message, RuleError, RuleEvaluationError, parse_rule, topic_matches

PAYLOAD = b'{"color": "red", "temperature": 100}'


def run(sql: str, payload: bytes = PAYLOAD, topic: str = "topic/subtopic", client: str = "c1") -> object:
    out = parse_rule(sql).apply(Message(topic, payload, client, received_ms=1234))
    return None if out is None else json.loads(out)


def test_reference_example_select_as_where() -> None:
    # iot-sql-reference: SELECT color AS rgb FROM 'topic/subtopic' WHERE temperature > 50
    assert run("SELECT color AS rgb FROM 'topic/subtopic' WHERE temperature > 50") == {"rgb": "red"}


def test_where_example_not_triggered() -> None:
    # iot-sql-where: the rule is triggered, but no action: no outgoing payload
    sql = "SELECT color AS my_color FROM 'topic/subtopic' WHERE temperature > 50 AND color <> 'red'"
    assert run(sql, b'{"color":"red", "temperature":40}') is None


def test_select_star_with_added_fields() -> None:
    # binary-payloads: SELECT *, ... as time FROM 'topic/subtopic' adds data to a JSON payload
    assert run("SELECT *, clientid() AS client, timestamp() AS time FROM 'topic/subtopic'") == {
        "color": "red",
        "temperature": 100,
        "client": "c1",
        "time": 1234,
    }


@pytest.mark.parametrize(
    "payload",
    [b'{"v": NaN}', b'{"v": -Infinity}', '{"a": 1}'.encode("utf-16"), b"[" * 100_000],
    ids=["nan", "infinity", "utf-16", "deep-nesting"],
)
def test_what_is_not_strict_json_is_an_error_for_the_rule(payload: bytes) -> None:
    """AWS IoT reads RFC 8259 JSON as UTF-8; the rule cannot add fields to anything else."""
    with pytest.raises(RuleEvaluationError, match="not JSON"):
        run("SELECT *, topic(2) AS device_id FROM 'topic/subtopic'", payload)


def test_the_stacks_own_rule_takes_the_device_id_from_the_topic() -> None:
    sql = "SELECT *, topic(2) AS device_id FROM 'sensors/+/telemetry'"
    out = run(sql, b'{"device_id": "spoofed", "msg_id": 1}', topic="sensors/dev-1/telemetry")
    assert out == {"device_id": "dev-1", "msg_id": 1}
    assert run("SELECT topic() AS t FROM 'a/#'", b"{}", topic="a/b/c") == {"t": "a/b/c"}


def test_nested_fields_and_default_names() -> None:
    sql = "SELECT readings.temperature.value, device_id FROM 't' WHERE readings.temperature.value >= 21.5"
    payload = b'{"device_id": "d", "readings": {"temperature": {"value": 21.5}}}'
    assert run(sql, payload, topic="t") == {"value": 21.5, "device_id": "d"}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("temperature = 100", True),
        ("temperature <> 100", False),
        ("temperature != 99", True),
        ("temperature < 100 OR color = 'red'", True),
        ("NOT (color = 'red')", False),
        ("(temperature > 10 AND temperature <= 100) AND NOT color = 'blue'", True),
        ("missing > 1", False),
        ("NOT missing > 1", True),
        ("color > 5", False),
        ("TRUE", True),
    ],
)
def test_where_logic(where: str, expected: bool) -> None:
    assert (run(f"SELECT * FROM 'topic/subtopic' WHERE {where}") is not None) is expected


def test_non_json_payloads() -> None:
    # binary-payloads: SELECT * alone passes a binary payload through; adding fields cannot work
    assert parse_rule("SELECT * FROM 't'").apply(Message("t", b"\x00\x01")) == b"\x00\x01"
    with pytest.raises(RuleEvaluationError):
        parse_rule("SELECT *, topic(1) AS t FROM 't'").apply(Message("t", b"not json"))


@pytest.mark.parametrize(
    ("sql", "part"),
    [
        ("SELECT temperature + 1 AS t FROM 'x'", "unsupported character '\\+'"),
        ("SELECT upper(color) AS c FROM 'x'", "function upper\\(\\) is not supported"),
        ("SET @a = 1 SELECT * FROM 'x'", "SET clauses"),
        ("SELECT * FROM 'x' LIMIT 5", "unsupported SQL after the statement: 'LIMIT'"),
        ("SELECT 5 FROM 'x'", "give '5' a name"),
        ("SELECT * FROM x", "expected string"),
    ],
)
def test_unsupported_sql_is_an_error_naming_the_part(sql: str, part: str) -> None:
    with pytest.raises(RuleError, match=part):
        parse_rule(sql)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("sensors/+/telemetry", "sensors/d1/telemetry", True),
        ("sensors/+/telemetry", "sensors/d1/x/telemetry", False),
        ("sensors/#", "sensors", True),
        ("sensors/#", "sensors/a/b", True),
        ("sensors/+", "sensors", False),
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        # a topic whose first level starts with `$` is the broker's or AWS's own: wildcards skip it
        ("#", "$aws/rules/r/sensors/d1/telemetry", False),
        ("+/rules/r/sensors/d1/telemetry", "$aws/rules/r/sensors/d1/telemetry", False),
        ("$aws/rules/+/sensors/+/telemetry", "$aws/rules/r/sensors/d1/telemetry", True),
        ("sensors/#", "sensors/$x", True),
    ],
)
def test_topic_filters(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    "number", ["1e400", "-2.5e999", "9" * 5000, "1E+400"], ids=["1e400", "negative", "5000 digits", "capital"]
)
def test_a_number_beyond_a_double_is_json_passed_on_as_written(number: str) -> None:
    """Valid JSON (RFC 8259's grammar has no range): the rule passes it on unchanged for the processor
    to quarantine with its reason, instead of failing it as not JSON into the DLQ."""
    rule = parse_rule("SELECT *, topic(2) AS device_id FROM 'sensors/+/telemetry'")
    payload = f'{{"readings": {{"temperature": {{"value": {number}, "unit": "C"}}}}, "s": "\\u0000"}}'
    out = rule.apply(Message("sensors/d1/telemetry", payload.encode()))
    assert (
        out
        == f'{{"readings":{{"temperature":{{"value":{number},"unit":"C"}}}},"s":"\\u0000","device_id":"d1"}}'.encode()
    )


def test_a_where_that_compares_a_huge_number_finds_it_undefined() -> None:
    """As a comparison with a value of another type: Undefined, so the WHERE is not true."""
    rule = parse_rule("SELECT * FROM 'sensors/+/telemetry' WHERE v > 1")
    assert rule.apply(Message("sensors/d1/telemetry", b'{"v": 1e400}')) is None
    assert rule.apply(Message("sensors/d1/telemetry", b'{"v": 2}')) == b'{"v":2}'
