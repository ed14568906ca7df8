"""Just enough MQTT (3.1, 3.1.1 and 5) to read packets off a stream: their type, a CONNECT's client
id and protocol level, a PUBLISH's QoS and payload size. Everything else passes through as bytes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import IntEnum

from ingress.quotas.exceptions import ProtocolError

MQTT5 = 5
MAX_VARINT_BYTES = 4
# AWS IoT Core refuses a client id longer than this
MAX_CLIENT_ID_BYTES = 128


class PacketType(IntEnum):
    """The control packet types a device sends (the high nibble of the first byte)."""

    CONNECT = 1
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    UNSUBSCRIBE = 10
    PINGREQ = 12
    DISCONNECT = 14
    AUTH = 15


@dataclass(frozen=True)
class Packet:
    """One control packet as it came: the first byte, and its bytes whole (to forward unchanged)."""

    first: int
    raw: bytes
    body_at: int  # where the variable header starts in `raw`

    @property
    def kind(self) -> int:
        return self.first >> 4

    @property
    def body(self) -> memoryview:
        return memoryview(self.raw)[self.body_at :]


@dataclass(frozen=True)
class Connect:
    client_id: str
    level: int  # 3: MQTT 3.1, 4: 3.1.1, 5: 5.0
    keep_alive_s: int = 0


@dataclass(frozen=True)
class Publish:
    qos: int
    topic: bytes
    payload: memoryview


class TooLarge(ProtocolError):
    """A packet longer than the gate accepts: it is not read, the connection is closed."""

    def __init__(self, first: int, length: int) -> None:
        super().__init__(f"a packet of {length} bytes")
        self.first = first
        self.length = length


async def read_packet(reader: asyncio.StreamReader, max_length: int) -> Packet | None:
    """The next packet, or None at the end of the stream; TooLarge past `max_length` bytes of body."""
    try:
        first = (await reader.readexactly(1))[0]
    except asyncio.IncompleteReadError:
        return None
    length, multiplier, header = 0, 1, bytearray([first])
    for _ in range(MAX_VARINT_BYTES):
        byte = (await reader.readexactly(1))[0]
        header.append(byte)
        length += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            break
        multiplier *= 128
    else:
        raise ProtocolError("a remaining length longer than four bytes")
    if length > max_length:
        raise TooLarge(first, length)
    return Packet(first, bytes(header) + await reader.readexactly(length), len(header))


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    """A variable byte integer at `at`: (value, where it ends)."""
    value, multiplier = 0, 1
    for i in range(MAX_VARINT_BYTES):
        if at + i >= len(data):
            break
        byte = data[at + i]
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value, at + i + 1
        multiplier *= 128
    raise ProtocolError("a malformed variable byte integer")


def _string(data: memoryview, at: int) -> tuple[bytes, int]:
    """A two-byte-length-prefixed string at `at`: (its bytes, where it ends)."""
    if at + 2 > len(data):
        raise ProtocolError("a string cut short")
    end = at + 2 + int.from_bytes(data[at : at + 2], "big")
    if end > len(data):
        raise ProtocolError("a string longer than its packet")
    return bytes(data[at + 2 : end]), end


def parse_connect(packet: Packet) -> Connect:
    """A CONNECT's client id and protocol level."""
    data = packet.body
    name, at = _string(data, 0)
    if name not in (b"MQTT", b"MQIsdp") or at + 4 > len(data):
        raise ProtocolError(f"not an MQTT CONNECT (protocol {name[:10]!r})")
    level = data[at]
    keep_alive_s = int.from_bytes(data[at + 2 : at + 4], "big")
    at += 4  # level, flags, keep alive
    if level == MQTT5:
        size, at = _varint(data, at)
        at += size
    client_id, _ = _string(data, at)
    if len(client_id) > MAX_CLIENT_ID_BYTES:
        raise ProtocolError(f"a client id of {len(client_id)} bytes, over AWS IoT's {MAX_CLIENT_ID_BYTES}")
    try:
        return Connect(client_id.decode(), level, keep_alive_s)
    except UnicodeDecodeError:
        raise ProtocolError("a client id that is not UTF-8") from None


def parse_publish(packet: Packet, level: int) -> Publish:
    """A PUBLISH's QoS, topic and payload (what AWS IoT meters and limits)."""
    data = packet.body
    qos = (packet.first >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("a PUBLISH with QoS 3")
    topic, at = _string(data, 0)
    if qos:
        at += 2
    if level == MQTT5:
        size, at = _varint(data, at)
        at += size
    if at > len(data):
        raise ProtocolError("a PUBLISH cut short")
    return Publish(qos, topic, data[at:])
