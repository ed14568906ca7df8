"""Fleet files, reproducibility, and faults that the processor must catch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processor.exceptions import RecordRejected
from processor.signature import verify
from processor.validation import parse
from simulator import cli as simulator_cli
from simulator.devices import EXPECTED_REJECTION, Emitted, Fault, build_devices, device_ids
from simulator.fleet import FleetError, load_fleet, parse_fleet
from simulator.limits import LimitError
from simulator.progress import WorkerProgress
from simulator.run import DRY_RUN_EPOCH, _generation_lead_s, _pregenerate, dry_run
from simulator.run_config import MqttTarget, RunConfig
from simulator.schedule import Schedule
from simulator.summary import Recorder
from telemetry.credentials import broker_credentials
from testbed.lifecycle.ports import free_port
from testbed.paths import ROOT
from toolkit.histogram import LatencyHistogram

KEY = b"fleet-key"
SMOKE = ROOT / "simulator" / "fleets" / "smoke.yaml"


def test_shipped_fleets_are_valid() -> None:
    for path in (ROOT / "simulator" / "fleets").glob("*.yaml"):
        assert load_fleet(path).device_count > 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"devices": [{"type": "toaster", "count": 1}]}, "devices.0.type: Input should be 'environmental'"),
        ({"devices": [{"type": "vibration", "count": 0}]}, "devices.0.count"),
        ({"devices": [{"type": "vibration", "count": 1, "sensors": ["co2"]}]}, "not sensors of vibration"),
        ({"devices": []}, "devices"),
        (
            {"devices": [{"type": "vibration", "count": 1}], "faults": {"spike": {"probability": 2}}},
            "faults.spike.probability",
        ),
        ({"devices": [{"type": "vibration", "count": 1, "colour": "red"}]}, "devices.0.colour"),
    ],
)
def test_invalid_fleets_name_the_field(data: object, message: str) -> None:
    with pytest.raises(FleetError, match=message.replace(".", r"\.").replace("'", ".")):
        parse_fleet(data)


def test_unreadable_fleet_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="cannot read fleet file"):
        load_fleet(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [")
    with pytest.raises(FleetError, match="not valid YAML"):
        load_fleet(bad)


def run_dry(tmp_path: Path, name: str, seed: int, duration: float = 30.0) -> bytes:
    out = tmp_path / name
    dry_run(RunConfig(fleet=load_fleet(SMOKE), seed=seed, key=KEY, duration_s=duration), out)
    return out.read_bytes()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    first, second = run_dry(tmp_path, "a.jsonl", 7), run_dry(tmp_path, "b.jsonl", 7)
    assert first == second and len(first.splitlines()) > 300
    assert run_dry(tmp_path, "c.jsonl", 8) != first


FAULTY = {
    "devices": [{"type": t, "count": 4} for t in ("environmental", "vibration", "power_meter", "cold_chain")],
    "faults": {
        "spike": {"probability": 0.05},
        "stuck": {"probability": 0.01, "duration_s": 20},
        "dropout": {"probability": 0.01, "duration_s": 10},
        "duplicate": {"probability": 0.05},
        "out_of_order": {"probability": 0.03},
        "clock": {"device_fraction": 0.5, "offset_s": 60, "drift_ppm": 500},
        "malformed": {"probability": 0.05},
        "bad_signature": {"probability": 0.03},
    },
}


def emitted_by_fault(seconds: int = 300) -> list[Emitted]:
    devices = build_devices(parse_fleet(FAULTY), seed=3, key=KEY)
    return [e for step in range(seconds) for d in devices for e in d.tick(DRY_RUN_EPOCH + step)]


def test_every_fault_kind_occurs_and_is_tagged() -> None:
    tags = {tag.split(":")[0] if tag.startswith("spike") else tag for e in emitted_by_fault() for tag in e.faults}
    assert {f.value for f in Fault} - {"spike"} <= tags | {"spike"}
    assert any(t.startswith("spike") for e in emitted_by_fault() for t in e.faults)


def test_faulty_messages_are_rejected_with_the_expected_reason_and_clean_ones_accepted() -> None:
    for emitted in emitted_by_fault(120):
        body = emitted.payload.decode()
        expected = {EXPECTED_REJECTION[Fault(t)] for t in emitted.faults if t in EXPECTED_REJECTION}
        try:
            message = parse(
                body,
                arrival_ms=json.loads(body)["ts"] if not expected else int(DRY_RUN_EPOCH * 1000),
                max_skew_ms=10**9,
            )
            verify(message, (KEY,))
        except RecordRejected as rejected:
            assert rejected.reason.value in expected, (emitted.faults, rejected)
            continue
        assert not expected, f"{emitted.faults} should have been rejected"


def test_duplicates_repeat_the_bytes_and_out_of_order_arrives_late() -> None:
    emitted = emitted_by_fault()
    duplicates = [e for e in emitted if Fault.DUPLICATE.value in e.faults]
    assert duplicates
    for e in duplicates:
        assert any(o.payload == e.payload and Fault.DUPLICATE.value not in o.faults for o in emitted)
    late = [e for e in emitted if Fault.OUT_OF_ORDER.value in e.faults]
    assert late
    for e in late:
        sequence = [o for o in emitted if o.device_id == e.device_id]
        before = sequence[: next(i for i, o in enumerate(sequence) if o is e)]
        assert max(o.msg_id for o in before) > e.msg_id, "a newer message overtook it"


def test_backlog_is_flushed_after_a_dropout() -> None:
    backlog = [e for e in emitted_by_fault() if Fault.BACKLOG.value in e.faults]
    assert backlog, "dropouts happened and their backlog was sent on reconnect"


def test_a_pregenerated_run_holds_the_dry_runs_messages_and_its_dropouts(tmp_path: Path) -> None:
    """Pre-generation changes when messages are made, not which: the same bytes as a dry run, same start."""
    config = RunConfig(fleet=parse_fleet(FAULTY), seed=3, key=KEY, duration_s=120)
    out = tmp_path / "dry.jsonl"
    dry_run(config, out, start=DRY_RUN_EPOCH)
    dry = [json.loads(line)["payload"].encode() for line in out.read_text().splitlines()]
    devices = build_devices(config.fleet, config.seed, config.key)
    events = _pregenerate(devices, Schedule(devices, DRY_RUN_EPOCH, config.profile), DRY_RUN_EPOCH + 120, Recorder())
    sent = [item.payload for _, item, _ in events if isinstance(item, Emitted)]
    assert sent == dry and len(sent) > 1000
    dropouts = [(at, item, until) for at, item, until in events if isinstance(item, str)]
    assert dropouts and all(until > at for at, _, until in dropouts), "devices go offline until a later time"
    assert [at for at, _, _ in events] == sorted(at for at, _, _ in events), "in the order they fall due"


def test_pregenerating_more_than_memory_allows_is_refused() -> None:
    fleet = parse_fleet({"devices": [{"type": "power_meter", "count": 1000, "interval_s": 0.01}]})
    with pytest.raises(LimitError, match=r"pre-generating ~3\d,\d{3},\d{3} messages would exceed 5,000,000"):
        _generation_lead_s(RunConfig(fleet=fleet, seed=1, key=KEY, duration_s=360, pregenerate=True))


def test_device_ids_are_the_ids_build_devices_gives() -> None:
    fleet = parse_fleet(FAULTY)
    for tag in ("", "r1"):
        assert device_ids(fleet, tag) == [d.device_id for d in build_devices(fleet, seed=3, key=KEY, run_tag=tag)]


def test_a_run_for_a_target_connects_as_it_says_and_applies_iot_cores_quotas_only_there() -> None:
    credentials = broker_credentials(b"secret")
    local = RunConfig.for_target(
        MqttTarget("127.0.0.1", 1884, credentials=credentials), fleet=parse_fleet(FAULTY), seed=1, key=KEY, duration_s=1
    )
    assert (local.host, local.port, local.credentials, local.iot_core_limits) == ("127.0.0.1", 1884, credentials, False)
    aws = MqttTarget("a1b2c3-ats.iot.eu-west-1.amazonaws.com", 8883)
    assert RunConfig.for_target(aws, fleet=parse_fleet(FAULTY), seed=1, key=KEY, duration_s=1).iot_core_limits


def test_the_fleets_progress_is_the_sum_of_each_workers_latest_report() -> None:
    fast, slow = LatencyHistogram(), LatencyHistogram()
    fast.observe(0.004)
    slow.observe(0.2)
    slow.observe(90.0)
    latest = {0: WorkerProgress(0, 10, 100, 90, 1, 2, 3, fast, 4), 1: WorkerProgress(1, 5, 50, 46, 0, 0, 1, slow)}
    total = WorkerProgress.total(latest.values())
    assert total[1:7] == (15, 150, 136, 1, 2, 4)
    assert total.duplicate_sends == 4
    assert total.in_flight == 9, "a duplicate send is a publish, not a message of its own"
    line = total.line(elapsed_s=10.0)
    assert "150 publishes  15 msg/s  136 acknowledged  1 failed  2 refused connections" in line
    assert total.ack_latency.cumulative()[0] == ("0.005", 1)
    assert total.ack_latency.cumulative()[-2:] == [("60.0", 2), ("+Inf", 3)]
    assert total.ack_latency.sum_s == pytest.approx(90.204)
    assert WorkerProgress.total([])[1:7] == (0, 0, 0, 0, 0, 0)


@pytest.mark.timeout(60)
def test_a_run_the_cli_cannot_start_is_reported_not_left_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's own checks raise in its worker thread; the CLI must still end, with the reason."""
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("devices:\n  - type: environmental\n    count: 1\n    interval_s: 0.001\n")
    monkeypatch.setenv("SIMULATOR_SIGNING_KEY", "k")
    argv = [
        "run",
        "--fleet",
        str(fleet),
        "--duration",
        "1",
        "--iot-core-limits",
        "--broker",
        f"127.0.0.1:{free_port()}",
    ]
    assert simulator_cli.main(argv) == 2
    assert "publishes/s per connection" in " ".join(capsys.readouterr().err.split())
