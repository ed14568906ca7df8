"""The AWS bill of a run (testbed/cost): each figure worked by hand from prices/us-east-1.json."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from testbed import cli
from testbed.cli import common
from testbed.cost import prices as prices_module
from testbed.cost.bill import Bill, bill_of, cost_section, what_ifs
from testbed.cost.prices import PRICES_DIR, PriceBook, PriceError, load_prices
from testbed.cost.traffic import MONTH_S, Traffic, iot_units, plan

HOUR = Traffic(
    seconds=3600,
    devices=100,
    messages=36_000,
    message_units=36_000,
    basic_ingest=False,
    actions=36_000,
    records_per_invocation=10,
    ms_per_invocation=49.2,
    memory_mb=512,
    items=36_000,
    item_bytes=700,
    write_units_per_item=1,
    alert_writes=0,
    archive_bytes=18_000_000,
    quarantined=10,
    alerts=0,
    log_bytes=0,
    keys=0,
    secrets=0,
    alarms=0,
)


@pytest.fixture(scope="module")
def prices() -> PriceBook:
    return load_prices("us-east-1")


def usd(bill: Bill, item: str) -> float:
    return next(line.usd for line in bill.lines if line.item == item)


def test_an_hour_of_100_devices_at_10_msg_s_priced_by_hand(prices: PriceBook) -> None:
    bill = bill_of(HOUR, prices)
    assert usd(bill, "iot.connection_minutes") == pytest.approx(100 * 60 * 0.08 / 1e6)
    assert usd(bill, "iot.messages") == pytest.approx(0.036)
    assert usd(bill, "iot.rules_triggered") == pytest.approx(0.0054)
    assert usd(bill, "iot.actions_executed") == pytest.approx(0.0054)
    # 36,000 sends by the rule's action + 3,600 receives + 3,600 deletes (10 records each: one call each)
    assert usd(bill, "sqs.requests") == pytest.approx(43_200 * 0.40 / 1e6)
    assert usd(bill, "lambda.requests") == pytest.approx(3_600 * 0.20 / 1e6)
    # 3,600 invocations x 50 ms (49.2 rounded up to the ms) x 0.5 GB = 90 GB-s
    assert usd(bill, "lambda.gb_seconds") == pytest.approx(90 * 0.0000166667)
    assert usd(bill, "dynamodb.write_request_units") == pytest.approx(36_000 * 0.625 / 1e6)  # 700 B: 1 WRU
    # 3,600 records (an invocation's 10 lines of 500 B packed into one), each rounded up to 5 KB
    assert usd(bill, "firehose.ingested_gb") == pytest.approx(3_600 * 5120 / 1024**3 * 0.029)
    # a flush a minute (60; the size never fills 5 MiB first) + 10 quarantine objects
    assert usd(bill, "s3.put_requests") == pytest.approx(70 * 0.005 / 1000)
    # 12 five-minute periods x 5 resources caching data keys
    assert usd(bill, "kms.requests") == pytest.approx(60 * 0.03 / 10_000)
    assert bill.total_usd == pytest.approx(sum(line.usd for line in bill.lines))
    assert bill.free_usd == 0, "the free tier is a monthly figure: none on a run's bill"


def test_basic_ingest_drops_the_messaging_charge_but_not_the_rule(prices: PriceBook) -> None:
    bill = bill_of(HOUR.with_changes(basic_ingest=True), prices)
    assert usd(bill, "iot.messages") == 0
    assert usd(bill, "iot.rules_triggered") == pytest.approx(0.0054)


def test_a_month_at_the_runs_rate_shows_the_free_tier_beside_not_subtracted(prices: PriceBook) -> None:
    month = HOUR.per_month()
    assert month.seconds == MONTH_S and month.messages == 36_000 * 720 and month.devices == 100
    bill = bill_of(month, prices)
    assert usd(bill, "iot.messages") == pytest.approx(25.92)
    free = {line.item: line.free_usd for line in bill.lines}
    assert free["lambda.requests"] == pytest.approx(0.20), "1M of the month's 2,592,000 invocations"
    assert free["iot.messages"] == pytest.approx(0.5), "500,000 messages"
    assert bill.total_usd > bill.free_usd > 0


def test_what_ifs_are_the_differences_worked_by_hand(prices: PriceBook) -> None:
    saved = what_ifs(HOUR.per_month(), prices)
    assert saved["publish through Basic Ingest"] == pytest.approx(25.92, abs=1e-4)
    # flushes a month: 43,200 (a minute each) -> 2,880 (900 s each)
    assert saved["a Firehose buffer of 128 MiB / 900 s"] == pytest.approx(40_320 * 0.005 / 1000, abs=1e-4)
    # invocations 2,592,000 -> 259,200: their requests and the per-invocation rounding (50 ms for 10
    # records -> 492 ms for 100); SQS still receives and deletes 10 messages a call, so no SQS saving
    fewer = 2_592_000 - 259_200
    gb_s = (2_592_000 * 0.050 - 259_200 * 0.492) * 0.5
    # Firehose: 2,592,000 records of 5,000 B (1 unit each) -> 259,200 of 50,000 B (10 units each): the same
    assert saved["Lambda batches of 100 records"] == pytest.approx(fewer * 0.20 / 1e6 + gb_s * 0.0000166667, abs=1e-4)
    assert what_ifs(HOUR.with_changes(basic_ingest=True).per_month(), prices)["publish through Basic Ingest"] == 0


def test_messages_are_metered_with_their_topic_in_5_kb_units() -> None:
    assert iot_units({"5000": 2, "100": 3}, topic_bytes=200) == (5, 2 * 2 + 3)
    assert iot_units({"4920": 1}, topic_bytes=200) == (1, 1), "exactly 5,120 bytes is one unit"


def test_a_planned_load_is_priced_without_a_run(prices: PriceBook) -> None:
    traffic = plan(rate_msg_s=10_000, devices=50_000, payload_bytes=400)
    section = cost_section(traffic, prices)
    assert section["month"]["rate_msg_s"] == 10_000
    messaging = next(line for line in section["month"]["lines"] if line["item"] == "iot.messages")
    # 25.92 billion messages of one unit each, through the tiers: $1.00, $0.80, $0.70 per million
    assert messaging["usd"] == pytest.approx(1_000 + 4_000 * 0.8 + 20_920 * 0.7)
    assert json.dumps(section)  # a report section is JSON


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda book: book["prices"]["iot.messages"].update(usd=-1), "greater than or equal to 0"),
        (lambda book: book["prices"].pop("sqs.requests"), "lacks sqs.requests"),
        (
            lambda book: book["prices"].update({"iot.shadow": book["prices"]["iot.messages"]}),
            "no bill uses: iot.shadow",
        ),
        (lambda book: book["prices"]["kms.keys"].update(per=0), "greater than 0"),
    ],
)
def test_a_price_file_that_would_price_a_bill_wrong_is_refused(
    edit: Callable[[dict[str, Any]], None], message: str, tmp_path: Path
) -> None:
    book = json.loads((PRICES_DIR / "us-east-1.json").read_text())
    edit(book)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(book))
    with pytest.raises(PriceError, match=message):
        load_prices(path=path)


def test_a_region_without_a_price_file_and_a_file_that_is_not_json_are_named(tmp_path: Path) -> None:
    with pytest.raises(PriceError, match=r"no price file for eu-west-9 \(shipped: us-east-1\)"):
        load_prices("eu-west-9")
    (tmp_path / "p.json").write_text("{")
    with pytest.raises(PriceError, match="cannot use the price file"):
        load_prices(path=tmp_path / "p.json")


def test_a_month_prices_through_the_volume_tiers_a_run_stays_in_the_first(prices: PriceBook) -> None:
    messages = prices.prices["iot.messages"]
    # 25.92 billion: the first billion at $1.00, the next four at $0.80, the rest at $0.70 per million
    assert messages.cost(25.92e9, tiered=True) == pytest.approx(1_000 + 4_000 * 0.8 + 20_920 * 0.7)
    assert messages.cost(25.92e9) == pytest.approx(25_920), "a run's bill: the first tier's price"
    assert messages.cost(0.5e9, tiered=True) == pytest.approx(500)


def test_tiers_out_of_order_are_refused(tmp_path: Path) -> None:
    book = json.loads((PRICES_DIR / "us-east-1.json").read_text())
    book["prices"]["iot.messages"]["tiers"] = [{"above": 5e9, "usd": 0.7}, {"above": 1e9, "usd": 0.8}]
    (tmp_path / "p.json").write_text(json.dumps(book))
    with pytest.raises(PriceError, match="tiers must ascend"):
        load_prices(path=tmp_path / "p.json")


def test_the_cost_command_prices_a_planned_load_and_names_a_bad_price_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=printed, width=300))
    plan_args = ["cost", "--rate", "10", "--devices", "100", "--payload-bytes", "400"]
    assert cli.main([*plan_args, "--json"]) == 0
    month = json.loads(capsys.readouterr().out)
    assert month["rate_msg_s"] == 10 and month["prices"]["as_of"] == "2026-11-30"
    # 10 msg/s for 30 days: 25,920,000 messages of one unit at $1.00 per million
    assert month["savings_usd"]["publish through Basic Ingest"] == pytest.approx(25.92, abs=0.01)
    assert cli.main([*plan_args, "--basic-ingest"]) == 0
    assert "publish through Basic Ingest: saves 0.00 a month" in printed.getvalue()
    assert cli.main([*plan_args, "--prices", str(tmp_path / "none.json")]) == 1
    assert f"cannot use the price file {tmp_path / 'none.json'}" in printed.getvalue()
    with pytest.raises(SystemExit):
        cli.main(["cost", "--rate", "0", "--devices", "1", "--payload-bytes", "1"])


def test_an_edited_price_file_that_would_mislead_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = (PRICES_DIR / "us-east-1.json").read_text()
    (tmp_path / "eu-west-1.json").write_text(source)  # copied, its prices left as Virginia's
    monkeypatch.setattr(prices_module, "PRICES_DIR", tmp_path)
    with pytest.raises(PriceError, match="is for us-east-1, not eu-west-1"):
        load_prices("eu-west-1")
    edits: list[tuple[Callable[[dict[str, Any]], None], str]] = [
        (lambda b: b["prices"]["iot.messages"].update(tiers=[{"above": 1000, "usd": 0.8}]), "below one pricing unit"),
        (lambda b: b["prices"]["sqs.requests"].update(usd=float("inf")), "finite number"),
    ]
    for edit, message in edits:
        edited = json.loads(source)
        edit(edited)
        (tmp_path / "p.json").write_text(json.dumps(edited))
        with pytest.raises(PriceError, match=message):
            load_prices(path=tmp_path / "p.json")
    repeated = source.replace('"currency": "USD",', '"currency": "USD", "currency": "EUR",')
    (tmp_path / "p.json").write_text(repeated)
    with pytest.raises(PriceError, match="currency given twice"):
        load_prices(path=tmp_path / "p.json")


def test_a_price_that_overflows_the_total_is_refused_not_printed_as_infinity(tmp_path: Path) -> None:
    """A price of 1e308 is a finite number the file's checks accept; times a month's messages it is
    Infinity, which the cost command printed, exiting 0."""
    book = json.loads((PRICES_DIR / "us-east-1.json").read_text())
    book["prices"]["iot.messages"]["usd"] = 1e308
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(book))
    prices = load_prices(path=path)
    with pytest.raises(PriceError, match=r"no finite total .*iot\.messages"):
        cost_section(plan(rate_msg_s=1_000, devices=10, payload_bytes=300, seconds=60), prices)
