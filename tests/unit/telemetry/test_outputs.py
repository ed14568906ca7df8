"""The stack outputs contract (telemetry/outputs.py): what a stack of the user's own must give, under
which names, and what a tool says when a stack lacks what it reads."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from telemetry.outputs import OutputsError, StackOutputs, parse_output_names, rename_outputs

INGRESS = {
    "ingest_queue_url": "http://q",
    "dlq_url": "http://dlq",
    "processor_function_name": "fn",
    "iot_rule_name": "rule",
    "iot_rule_sql": "SELECT * FROM 'a/+'",
    "region": "eu-west-1",
}


def terraform_json(values: Mapping[str, object]) -> dict[str, dict[str, object]]:
    return {name: {"value": value, "type": "string", "sensitive": False} for name, value in values.items()}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ingest_queue_url", "cannot read 'ingest_queue_url'"),
        ("ingest_queue_url=", "cannot read"),
        ("=readings", "cannot read"),
        ("ingest_queue_url=a=b", "cannot read"),
        ("ingest_queue_url=readings;rm", "cannot read"),
        ("ingest_queue_url=$(id)", "cannot read"),
        ("no_such_output=readings", "names 'no_such_output', which is none of"),
        ("dlq_url=a,dlq_url=b", "gives dlq_url twice"),
    ],
)
def test_a_malformed_mapping_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(OutputsError, match=message.replace("(", r"\(").replace("$", r"\$")):
        parse_output_names(text)


def test_a_mapping_reads_from_an_environment_variable_or_an_ini_block_alike() -> None:
    assert parse_output_names("") == {}
    assert parse_output_names("dlq_url=dead,ingest_queue_url=readings") == {
        "dlq_url": "dead",
        "ingest_queue_url": "readings",
    }
    block = "\n    dlq_url=dead  ingest_queue_url=readings\n    dlq_url=dead\n"
    assert parse_output_names(block) == {"dlq_url": "dead", "ingest_queue_url": "readings"}


def test_a_stack_without_an_output_the_ingress_needs_is_named() -> None:
    without = {k: v for k, v in INGRESS.items() if k not in ("iot_rule_sql", "dlq_url")}
    with pytest.raises(OutputsError, match="missing: dlq_url, iot_rule_sql"):
        StackOutputs.from_terraform(terraform_json(without))


def test_the_ingress_outputs_alone_make_a_stack_and_a_tool_names_what_it_misses() -> None:
    outputs = StackOutputs.from_terraform(terraform_json({**INGRESS, "unrelated": "x"}))
    assert outputs.ingest_queue_url == "http://q" and outputs.telemetry_table_name is None
    assert outputs.iot_rule_enabled is False
    with pytest.raises(OutputsError, match=r"needs the stack output telemetry_table_name.*TESTBED_OUTPUTS="):
        outputs.need("telemetry_table_name")
    assert outputs.need("dlq_url") == "http://dlq"
    with pytest.raises(OutputsError, match="needs the stack output __class__"):
        outputs.need("__class__")


def test_an_empty_output_value_counts_as_none() -> None:
    outputs = StackOutputs.from_terraform(terraform_json({**INGRESS, "archive_bucket_name": ""}))
    with pytest.raises(OutputsError, match="archive_bucket_name"):
        outputs.need("archive_bucket_name")


def test_mapped_outputs_take_the_contracts_names_and_a_missing_one_is_named_with_what_there_is() -> None:
    raw = terraform_json({"readings_queue_url": "http://q", "climate_table": "t"})
    renamed = rename_outputs(raw, {"ingest_queue_url": "readings_queue_url"})
    assert renamed["ingest_queue_url"]["value"] == "http://q"
    assert renamed["climate_table"]["value"] == "t", "the stack's own names stay readable"
    with pytest.raises(OutputsError, match=r"store_function \(for processor_function_name\); it has: climate_table, "):
        rename_outputs(raw, {"processor_function_name": "store_function"})
    with pytest.raises(OutputsError, match=r"it has: none \(is it deployed\?\)"):
        rename_outputs({}, {"dlq_url": "dead"})


def test_an_output_the_ingress_reads_as_text_that_is_not_text_is_named() -> None:
    with pytest.raises(OutputsError, match=r"must be text are not: iot_rule_sql \(dict\)"):
        StackOutputs.from_terraform(terraform_json({**INGRESS, "iot_rule_sql": {"sql": "SELECT 1"}}))


def test_the_processors_log_group_is_lambdas_own_unless_the_stack_names_one() -> None:
    outputs = StackOutputs.from_terraform(terraform_json(INGRESS))
    assert outputs.function_log_group == "/aws/lambda/fn"
    named = StackOutputs.from_terraform(terraform_json({**INGRESS, "processor_log_group_name": "/team/fn"}))
    assert named.function_log_group == "/team/fn"
