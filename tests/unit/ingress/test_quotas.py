"""The quota gate's parts on a fake clock: MQTT framing (3.1.1 and 5, hostile bytes), the token
buckets and the per-client-id CONNECT limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ingress.quotas import gate
from ingress.quotas.exceptions import ProtocolError
from ingress.quotas.gate import Ledger
from ingress.quotas.limits import ConnectLimiter, IotQuotas, Quota, RateWindow
from ingress.quotas.packets import Connect, Packet, PacketType, TooLarge, parse_connect, parse_publish, read_packet


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect(client_id: str, level: int = 4) -> bytes:
    name = b"MQIsdp" if level == 3 else b"MQTT"  # MQTT 3.1's protocol name
    props = b"\x00" if level == 5 else b""
    return packet(0x10, string(name) + bytes([level, 0x02]) + b"\x00\x3c" + props + string(client_id.encode()))


def publish(topic: bytes, payload: bytes, qos: int = 1, level: int = 4, props: bytes = b"") -> bytes:
    packet_id = b"\x00\x07" if qos else b""
    properties = varint(len(props)) + props if level == 5 else b""
    return packet(0x30 | qos << 1, string(topic) + packet_id + properties + payload)


def read(data: bytes, max_length: int = 1 << 20) -> Packet:
    async def go() -> Packet:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        got = await read_packet(reader, max_length)
        if got is None:
            raise asyncio.IncompleteReadError(b"", None)
        return got

    return asyncio.run(go())


@pytest.mark.parametrize("level", [3, 4, 5])
def test_a_connect_gives_its_client_id_and_level(level: int) -> None:
    got = read(connect("dev-1", level))
    assert got.kind == PacketType.CONNECT
    assert parse_connect(got) == Connect("dev-1", level, keep_alive_s=60)


@pytest.mark.parametrize(("qos", "level", "props"), [(0, 4, b""), (1, 4, b""), (1, 5, b"\x01\x01"), (0, 5, b"")])
def test_a_publish_gives_its_qos_and_payload_under_either_protocol(qos: int, level: int, props: bytes) -> None:
    got = read(publish(b"sensors/a/telemetry", b'{"msg_id": 3}', qos, level, props))
    parsed = parse_publish(got, level)
    assert (parsed.qos, parsed.topic, bytes(parsed.payload)) == (qos, b"sensors/a/telemetry", b'{"msg_id": 3}')


def test_a_packet_longer_than_allowed_is_not_read() -> None:
    with pytest.raises(TooLarge) as raised:
        read(publish(b"t", b"x" * 2000), max_length=1000)
    assert raised.value.first >> 4 == PacketType.PUBLISH and raised.value.length > 2000


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\xff\xff\xff\xff\x01",  # a remaining length of five bytes
        packet(0x10, string(b"HTTP") + b"\x04\x02\x00\x3c" + string(b"x")),  # not MQTT
        packet(0x10, string(b"MQTT") + b"\x04\x02"),  # cut short
        packet(0x10, string(b"MQTT") + b"\x04\x02\x00\x3c" + b"\x00\x09ab"),  # a client id past the end
        packet(0x10, string(b"MQTT") + b"\x04\x02\x00\x3c" + string(b"\xff\xfe")),  # not UTF-8
    ],
)
def test_hostile_connects_are_refused_with_a_reason(data: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"\w"):
        got = read(data)
        parse_connect(got)


def test_a_publish_with_qos_3_or_cut_short_is_refused() -> None:
    with pytest.raises(ProtocolError, match="QoS 3"):
        parse_publish(read(packet(0x36, string(b"t") + b"\x00\x01")), 4)
    with pytest.raises(ProtocolError, match=r"cut short|longer"):
        parse_publish(read(packet(0x32, b"\x00\x09ab")), 4)


@given(st.binary(max_size=64))
def test_any_bytes_give_a_packet_an_end_or_a_protocol_error(data: bytes) -> None:
    try:
        got = read(data, max_length=32)
    except (ProtocolError, asyncio.IncompleteReadError):
        return
    for parse in (parse_connect, lambda p: parse_publish(p, 5)):
        with contextlib.suppress(ProtocolError):
            parse(got)


def test_no_second_carries_more_than_the_limit_a_burst_up_to_it_included() -> None:
    clock = Clock()
    window = RateWindow(100, clock)
    taken = 0
    while window.has(1):
        window.take(1)
        taken += 1
    assert taken == 100, "a burst of the whole second's worth at once"
    clock.now += 0.5
    assert not window.has(1), "the same second"
    clock.now += 0.5
    assert window.has(100) and not window.has(101)
    bytes_window = RateWindow(1000, clock)
    bytes_window.take(600)
    assert not bytes_window.has(401) and bytes_window.has(400), "amounts add up, as bytes do"


def test_one_connect_per_second_per_client_id() -> None:
    clock = Clock()
    limiter = ConnectLimiter(1, clock)
    assert limiter.allow("a") and limiter.allow("b")
    clock.now += 0.9
    assert not limiter.allow("a")
    clock.now += 0.2
    assert limiter.allow("a"), "a second after the accepted one"


def test_quotas_default_to_aws_and_refuse_what_aws_could_not_be() -> None:
    quotas = IotQuotas()
    assert (quotas.publishes_per_s, quotas.bytes_per_s, quotas.connects_per_s) == (100, 512 * 1024, 1)
    assert (quotas.max_payload_bytes, quotas.account_publishes_per_s) == (128 * 1024, 20_000)
    for bad in ({"publishes_per_s": 0}, {"max_payload_bytes": 200_000}, {"account_publishes_per_s": -1}, {"x": 1}):
        with pytest.raises(ValidationError):
            IotQuotas(**bad)


def test_a_client_id_longer_than_aws_takes_is_refused() -> None:
    assert parse_connect(read(connect("d" * 128))).client_id == "d" * 128
    with pytest.raises(ProtocolError, match="129 bytes, over AWS IoT's 128"):
        parse_connect(read(connect("d" * 129)))


def test_the_connect_limit_forgets_ids_past_their_interval_oldest_first() -> None:
    clock = Clock()
    limiter = ConnectLimiter(1, clock)
    for n in range(50_000):
        assert limiter.allow(f"dev-{n}")
    assert len(limiter) == 50_000
    clock.now += 1.0
    assert limiter.allow("dev-0") and len(limiter) == 1, "every id a second old is forgotten at once"


def test_a_throughput_below_one_payload_is_refused() -> None:
    with pytest.raises(ValidationError, match="throttled for ever"):
        IotQuotas(bytes_per_s=1000)


def test_the_ledger_keeps_the_ids_of_dropped_publishes_only_from_a_top_level_integer(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.json")
    for payload in (
        b'{"msg_id": 7}',
        b'{"inner": {"msg_id": 8}}',
        b'{"msg_id": true}',
        b"not json",
        b'{"msg_id": "9"}',
    ):
        ledger.hit("dev", Quota.PUBLISH_RATE, memoryview(payload))
    ledger.hit("dev", Quota.PUBLISH_RATE, None)  # QoS 1: sent again, no id kept
    ledger.write()
    written = json.loads((tmp_path / "ledger.json").read_text())
    assert written["devices"]["dev"]["msg_ids"] == [7]
    assert written["devices"]["dev"]["by_quota"] == {Quota.PUBLISH_RATE.value: 6}


def test_a_ledger_that_cannot_be_written_is_tried_again_and_never_raises(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "missing" / "ledger.json")
    ledger.hit("dev", Quota.CONNECT_RATE)
    ledger.write()  # the folder does not exist: logged, not raised
    (tmp_path / "missing").mkdir()
    ledger.write()
    assert json.loads((tmp_path / "missing" / "ledger.json").read_text())["throttled"] == {Quota.CONNECT_RATE.value: 1}


def test_client_ids_past_the_ledgers_limit_are_counted_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "MAX_DEVICES", 2)
    ledger = Ledger(None)
    for client in ("a", "b", "c", "d"):
        ledger.hit(client, Quota.CONNECT_RATE)
    assert set(ledger.devices) == {"a", "b", gate.OTHERS}
    assert ledger.devices[gate.OTHERS].by_quota == {Quota.CONNECT_RATE.value: 2}
