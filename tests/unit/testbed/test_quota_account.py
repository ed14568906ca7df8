"""AWS IoT Core's quotas in a run's report: the gate's ledger read for the run's devices next to what
the simulator saw, a QoS 0 message the gate dropped counted throttled (refused, not lost), a ledger
that cannot be read said so, and the scenario's `aws_quotas` and resend timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingress.quotas.limits import IotQuotas, Quota
from testbed.runs.quota_account import quota_account, quota_lines
from testbed.runs.reconcile import check_plan, reconcile, run_counts
from testbed.runs.scenario import DEFAULT_ACK_TIMEOUT_S, Scenario, ScenarioError, load_scenario
from tests.unit.testbed.test_reconcile import summary
from toolkit.counts import sums

STARTED = 1_000.0


def ledger(tmp_path: Path, devices: dict[str, dict[str, object]]) -> Path:
    path = tmp_path / "quota-ledger.json"
    path.write_text(json.dumps({"forwarded_publishes": 9, "devices": devices}))
    return path


def test_the_runs_devices_that_hit_a_quota_are_reported_with_what_the_simulator_saw(tmp_path: Path) -> None:
    run = summary({"a": [1, 2, 3], "b": [1]})
    run["per_device"]["a"]["resends"] = 4
    hits = {Quota.PUBLISH_RATE.value: 4}
    path = ledger(
        tmp_path,
        {
            "a": {"by_quota": hits, "first": STARTED + 1.25, "last": STARTED + 3.5, "msg_ids": [2, 3]},
            "b": {"by_quota": {}, "first": 0, "last": 0, "msg_ids": []},
            "other-run": {"by_quota": hits, "first": 0, "last": 0, "msg_ids": [1]},
        },
    )
    account = quota_account(path, IotQuotas(), run, ["a", "b"], STARTED)
    assert account.throttled_publishes == 4 and account.throttled_ids == {("a", 2), ("a", 3)}
    row = account.as_dict()["devices"]["a"]
    assert row == {
        "by_quota": hits,
        "first_s": 1.2,
        "last_s": 3.5,
        "resends": 4,
        "acknowledged": 3,
        "failed": 0,
    }, "another run's device and a device without a hit are not this run's"
    text = "\n".join(quota_lines(account.as_dict()))
    assert "| a | publishes per second per connection: 4 | 1.2 | 3.5 | 4 | 3 | 0 |" in text
    assert "publishes_per_s 100" in text


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"devices": 7}'])
def test_a_ledger_that_cannot_be_read_is_said_so_not_taken_as_no_hits(tmp_path: Path, content: str) -> None:
    path = tmp_path / "quota-ledger.json"
    path.write_text(content)
    account = quota_account(path, IotQuotas(), summary({"a": [1]}), ["a"], STARTED)
    assert account.ledger_error is not None and str(path) in account.ledger_error
    assert "could not be read" in "\n".join(quota_lines(account.as_dict()))


def test_no_ledger_yet_is_no_hit(tmp_path: Path) -> None:
    account = quota_account(tmp_path / "none.json", IotQuotas(), summary({"a": [1]}), ["a"], STARTED)
    assert account.devices == {} and account.ledger_error is None
    assert "No device hit a quota." in quota_lines(account.as_dict())


def test_a_qos0_message_the_gate_dropped_is_throttled_not_unaccounted_and_the_sums_hold() -> None:
    run = summary({"a": [1, 2, 3]})
    stored = [("a", 1)]
    plan = check_plan({"a": [1, 2, 3]}, run)
    dropped = reconcile(run, stored, [], [], throttled=frozenset({("a", 2)}))
    counts = run_counts(plan, run, dropped, throttled_publishes=1)
    assert (counts["throttled"], counts["unaccounted"], counts["throttled_publishes"]) == (1, 1, 1)
    assert dropped.lost == [("a", 3)], "a message the gate never refused is still lost"
    assert all(sums(counts).values()), sums(counts)


def test_a_scenario_turns_aws_quotas_on_with_defaults_or_its_own_and_resends_after_a_second() -> None:
    base = load_scenario("smoke").model_dump()
    on = Scenario.model_validate({**base, "aws_quotas": True})
    assert on.aws_quotas == IotQuotas() and on.resend_after_s == DEFAULT_ACK_TIMEOUT_S
    own = Scenario.model_validate({**base, "aws_quotas": {"account_publishes_per_s": 500}, "ack_timeout_s": 3})
    assert own.aws_quotas is not None and own.aws_quotas.account_publishes_per_s == 500
    assert own.resend_after_s == 3
    assert Scenario.model_validate({**base, "aws_quotas": False}).aws_quotas is None
    assert Scenario.model_validate({**base, "aws_quotas": True, "qos": 0}).resend_after_s is None, "QoS 0 has no PUBACK"
    assert Scenario.model_validate(base).resend_after_s is None


def test_quotas_a_scenario_cannot_have_are_refused_by_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nfleet: simulator/fleets/smoke.yaml\nduration_s: 5\naws_quotas: {publishes_per_s: -1}\n")
    with pytest.raises(ScenarioError, match=r"aws_quotas\.publishes_per_s"):
        load_scenario(str(path))
