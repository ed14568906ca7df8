"""The quota gate: devices connect here, the gate forwards to the broker what AWS IoT Core would
accept and throttles the rest before the broker can acknowledge it. A throttled publish is not
forwarded (QoS 1: no PUBACK, the device sends it again; QoS 0: gone) and the connection stays; a
CONNECT over its rate and an oversized payload close the connection, as AWS does. The broker's
answers stream back untouched. Every hit is written to a ledger (JSON) per client id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ingress.quotas.exceptions import ProtocolError
from ingress.quotas.limits import CLOSES_CONNECTION, ConnectLimiter, IotQuotas, Quota, RateWindow
from ingress.quotas.packets import PacketType, TooLarge, parse_connect, parse_publish, read_packet

logger = logging.getLogger(__name__)

PIPE_CHUNK_BYTES = 64 * 1024
# a topic (256 bytes), its length, a packet id and MQTT 5 properties on top of the payload
HEADER_ALLOWANCE_BYTES = 4 * 1024
LEDGER_INTERVAL_S = 1.0
# message ids the ledger keeps per device (of throttled QoS 0 publishes), and client ids it keeps,
# so a flood cannot fill memory; what is past them is counted, not kept
MAX_IDS_PER_DEVICE = 100_000
MAX_DEVICES = 100_000
OTHERS = "(client ids past the ledger's limit)"
# a device that has not sent its CONNECT this long after connecting is closed
CONNECT_TIMEOUT_S = 10.0
# MQTT: a server closes a connection silent for 1.5 times its keep alive
KEEP_ALIVE_GRACE = 1.5


@dataclass
class Hits:
    """One client id's quota hits: how many of each, first and last (epoch seconds), and the
    message ids of its throttled QoS 0 publishes (a JSON payload's top-level integer `msg_id`), the
    messages AWS drops; a throttled QoS 1 publish is sent again, so it is not one to account for."""

    by_quota: dict[str, int] = field(default_factory=dict)
    first: float = 0.0
    last: float = 0.0
    msg_ids: set[int] = field(default_factory=set)


class Ledger:
    """Every quota hit per client id, and the totals; written to a file as JSON."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.devices: dict[str, Hits] = {}
        self.forwarded = 0
        self.connections = 0
        self.protocol_errors = 0
        self.broker_errors = 0
        self._hits = 0
        self._written: tuple[int, ...] | None = None

    def hit(self, client_id: str, quota: Quota, dropped: memoryview | None = None) -> None:
        """A quota hit; `dropped`: the payload of a QoS 0 publish the gate dropped."""
        now = time.time()
        if client_id not in self.devices and len(self.devices) >= MAX_DEVICES:
            client_id = OTHERS
        hits = self.devices.setdefault(client_id, Hits(first=now))
        hits.by_quota[quota.value] = hits.by_quota.get(quota.value, 0) + 1
        hits.last = now
        if dropped is not None and len(hits.msg_ids) < MAX_IDS_PER_DEVICE:
            msg_id = _msg_id(dropped)
            if msg_id is not None:
                hits.msg_ids.add(msg_id)
        self._hits += 1

    def to_dict(self) -> dict[str, object]:
        totals: dict[str, int] = {}
        for hits in self.devices.values():
            for quota, n in hits.by_quota.items():
                totals[quota] = totals.get(quota, 0) + n
        return {
            "forwarded_publishes": self.forwarded,
            "connections": self.connections,
            "protocol_errors": self.protocol_errors,
            "broker_errors": self.broker_errors,
            "throttled": totals,
            "devices": {client: {**asdict(hits), "msg_ids": sorted(hits.msg_ids)} for client, hits in self._sorted()},
        }

    def _sorted(self) -> list[tuple[str, Hits]]:
        return sorted(self.devices.items())

    def write(self) -> None:
        """Replace the ledger file whole (a reader never sees half of one), when something changed."""
        state = (self.forwarded, self.connections, self.protocol_errors, self.broker_errors, self._hits)
        if self.path is None or state == self._written:
            return
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            partial.write_text(json.dumps(self.to_dict()))
            os.replace(partial, self.path)
        except OSError as exc:  # a full disk costs the ledger's freshness, never the gate
            logger.warning("could not write the ledger to %s (tried again in a second): %s", self.path, exc)
            return
        self._written = state


def _msg_id(payload: memoryview) -> int | None:
    """A JSON payload's top-level integer `msg_id`, if it has one."""
    try:
        body = json.loads(bytes(payload))
    except (ValueError, RecursionError):
        return None
    msg_id = body.get("msg_id") if isinstance(body, dict) else None
    return msg_id if isinstance(msg_id, int) and not isinstance(msg_id, bool) else None


class QuotaGate:
    """An MQTT-aware TCP gate on 127.0.0.1 in front of one broker."""

    def __init__(
        self,
        broker: tuple[str, int],
        quotas: IotQuotas,
        ledger: Ledger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = broker
        self.quotas = quotas
        self.ledger = ledger
        self._clock = clock
        self._account = RateWindow(quotas.account_publishes_per_s, clock)
        self._connects = ConnectLimiter(quotas.connects_per_s, clock)
        self._max_body = quotas.max_payload_bytes + HEADER_ALLOWANCE_BYTES
        self._open: set[asyncio.StreamWriter] = set()

    def close_all(self) -> None:
        """Drop every connection at once (at shutdown: devices reconnect, as to a restarted broker)."""
        for stream in list(self._open):
            stream.transport.abort()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One device connection: read its packets, forward or throttle each; pipe the broker's back."""
        self.ledger.connections += 1
        upstream: asyncio.StreamWriter | None = None
        back: asyncio.Task[None] | None = None
        client_id: str | None = None
        self._open.add(writer)
        try:
            try:
                first = await asyncio.wait_for(read_packet(reader, self._max_body), CONNECT_TIMEOUT_S)
            except TimeoutError:
                raise ProtocolError(f"no CONNECT within {CONNECT_TIMEOUT_S:g} s") from None
            if first is None or first.kind != PacketType.CONNECT:
                raise ProtocolError("the first packet is not a CONNECT")
            connect = parse_connect(first)
            client_id = connect.client_id
            if not self._connects.allow(client_id):
                self.ledger.hit(client_id, Quota.CONNECT_RATE)
                return
            try:
                broker_reader, upstream = await asyncio.open_connection(*self.broker)
            except OSError as exc:
                self.ledger.broker_errors += 1
                logger.warning("the broker at %s:%d did not answer: %s", *self.broker, exc)
                return
            self._open.add(upstream)
            back = asyncio.create_task(_pipe(broker_reader, writer))
            upstream.write(first.raw)
            idle_s = connect.keep_alive_s * KEEP_ALIVE_GRACE or None
            await self._forward(client_id, connect.level, reader, upstream, back, idle_s)
        except TooLarge as exc:
            if exc.first >> 4 == PacketType.PUBLISH and client_id is not None:
                self.ledger.hit(client_id, Quota.PAYLOAD_SIZE)
            else:
                self.ledger.protocol_errors += 1
        except (ProtocolError, asyncio.IncompleteReadError) as exc:
            self.ledger.protocol_errors += 1
            reason = "a packet cut short" if isinstance(exc, asyncio.IncompleteReadError) else exc
            logger.info("closed a connection from %s: %s", client_id or "a client before its CONNECT", reason)
        except OSError:
            pass
        finally:
            if back is not None:
                back.cancel()
            for stream in (upstream, writer):
                if stream is not None:
                    # abort, not close: a device that never reads must not hold its connection open
                    stream.transport.abort()
                    self._open.discard(stream)

    async def _forward(
        self,
        client_id: str,
        level: int,
        reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        back: asyncio.Task[None],
        idle_s: float | None,
    ) -> None:
        publishes = RateWindow(self.quotas.publishes_per_s, self._clock)
        throughput = RateWindow(self.quotas.bytes_per_s, self._clock)
        while not back.done():
            try:
                packet = await asyncio.wait_for(read_packet(reader, self._max_body), idle_s)
            except TimeoutError:
                raise ProtocolError(f"silent for {idle_s:g} s, past its keep alive") from None
            if packet is None:
                return
            if packet.kind == PacketType.PUBLISH:
                publish = parse_publish(packet, level)
                quota = self._over(len(publish.payload), publishes, throughput)
                if quota is not None:
                    self.ledger.hit(client_id, quota, publish.payload if publish.qos == 0 else None)
                    if quota in CLOSES_CONNECTION:
                        return
                    continue
                self.ledger.forwarded += 1
            upstream.write(packet.raw)
            await upstream.drain()

    def _over(self, size: int, publishes: RateWindow, throughput: RateWindow) -> Quota | None:
        """The quota a publish of `size` bytes exceeds, if any; within all of them, it is counted against each."""
        if size > self.quotas.max_payload_bytes:
            return Quota.PAYLOAD_SIZE
        if not publishes.has(1):
            return Quota.PUBLISH_RATE
        if not throughput.has(size):
            return Quota.THROUGHPUT
        if not self._account.has(1):
            return Quota.ACCOUNT_RATE
        publishes.take(1)
        throughput.take(size)
        self._account.take(1)
        return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The broker's packets to the device, as they come; the device's side closes when the broker's does."""
    with contextlib.suppress(OSError):
        while chunk := await reader.read(PIPE_CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    writer.close()


async def run_gate(gate: QuotaGate, port: int, ready: Callable[[int], None] | None = None) -> None:
    """Serve on 127.0.0.1:`port` (0: a free one, handed to `ready`), writing the ledger every second."""
    server = await asyncio.start_server(gate.serve, "127.0.0.1", port)
    if ready is not None:
        ready(server.sockets[0].getsockname()[1])
    try:
        while True:
            gate.ledger.write()
            await asyncio.sleep(LEDGER_INTERVAL_S)
    finally:
        server.close()
        gate.close_all()
        gate.ledger.write()
