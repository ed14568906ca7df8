"""Many MQTT connections driven by one selector loop (no thread per device), with backpressure.

Each device has its own paho client. The loop reads and writes their sockets when ready, and
calls loop_misc (keepalive, QoS retries) about once a second per client. A device never has
more than `window` messages in flight: beyond that its messages wait, and their lateness grows.
A connection the broker drops (a restart, a crash) comes back by itself after a jittered,
growing delay, as real devices do; paho then sends again what the broker had not acknowledged.
"""

from __future__ import annotations

import logging
import random
import selectors
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulator.connection import DEFAULT_TOPIC, TlsContexts
from simulator.devices import Emitted
from telemetry.backoff import backoff_s
from telemetry.topics import DeviceTopic
from toolkit.mqtt_io import DISCONNECT_PACKET, BulkClient, peer_closed, pending, reset

logger = logging.getLogger(__name__)

KEEPALIVE_S = 60
MISC_INTERVAL_S = 1.0
MAX_PENDING_PER_DEVICE = 10_000
# An unplanned disconnect is retried after a random delay in [base, min(cap, base * 2^tries)].
RECONNECT_BASE_S = 0.5
RECONNECT_CAP_S = 10.0
# how long close() waits for the broker to end each connection after its DISCONNECT
CLOSE_WAIT_S = 2.0


def _forget(client: mqtt.Client, mid: int) -> None:
    """Drop paho's own copy of a publish sent again under a new id. paho has no public way to: left
    there, the copy waits for a PUBACK that never comes and is sent yet again after any reconnect,
    on top of the resend. Without the private table (another paho), the copy stays, as it was."""
    lock = getattr(client, "_out_message_mutex", None)
    messages = getattr(client, "_out_messages", None)
    if lock is None or messages is None:
        return
    with lock:
        messages.pop(mid, None)


class FailureCause(StrEnum):
    """Why a message never got the broker's acknowledgement (the run summary counts each)."""

    QUEUE_FULL = "queue_full"  # more than MAX_PENDING_PER_DEVICE waiting on one device
    DISCONNECTED = "disconnected"  # QoS 0, in flight when the connection dropped
    UNACKED_AT_END = "unacked_at_end"  # still waiting when the run's drain time was up


@dataclass
class Counters:
    published: int = 0
    acked: int = 0
    failed: int = 0
    connected: int = 0
    connect_errors: int = 0
    reconnects: int = 0
    failed_by_cause: Counter[str] = field(default_factory=Counter)


@dataclass(eq=False)
class _Connection:
    device_id: str
    client: mqtt.Client
    topic: str
    connected: bool = False
    inflight: dict[int, Emitted] = field(default_factory=dict)
    sent_at: dict[int, float] = field(default_factory=dict)  # mid -> when it left (monotonic), with an ack timeout
    pending: deque[Emitted] = field(default_factory=deque)
    resends: deque[Emitted] = field(default_factory=deque)  # no PUBACK within the ack timeout: first in line
    sock: Any = None  # a socket, or paho's WebSocket wrapper around one (both have fileno())
    write_watched: bool = False  # registered for EVENT_WRITE: its socket was full
    tokens: float = 1.0  # publish budget under a per-connection rate limit
    refilled: float = 0.0
    online: bool = True  # the device wants its connection (false while it is offline by plan)
    dropped: bool = False  # lost its connection without asking: the next CONNACK is a reconnect
    tries: int = 0  # reconnect attempts since the last successful connection


class MqttFleet:
    """The fleet's connections to one broker, in one process."""

    def __init__(
        self,
        host: str,
        port: int,
        qos: int,
        window: int = 100,
        clean_session: bool = True,
        credentials: Callable[[str], tuple[str, str]] | None = None,
        on_send: Callable[[Emitted, float], None] | None = None,
        on_ack: Callable[[Emitted, float], None] | None = None,
        on_fail: Callable[[Emitted, str], None] | None = None,
        websocket_host: str | None = None,
        tls: TlsContexts | None = None,
        max_rate_per_connection: float | None = None,
        topic: DeviceTopic = DEFAULT_TOPIC,
        ack_timeout_s: float | None = None,
        on_resend: Callable[[Emitted], None] | None = None,
    ) -> None:
        self.host, self.port, self.qos, self.window = host, port, qos, window
        # MQTT over WebSocket (path /mqtt) with this Host header, as AWS IoT Core's endpoint takes it
        self.websocket_host = websocket_host
        self.clean_session = clean_session
        # X.509 per device (AWS IoT Core's way); the TLS handshake happens inside connect()
        self.tls = tls
        self.credentials = credentials
        # each device's topic: `{device_id}` replaced (checked by simulator.connection.topic_template)
        self.topic = topic
        # A broker's per-connection publish quota (AWS IoT Core: 100/s); sends beyond it wait, counted as lateness.
        self.max_rate = max_rate_per_connection
        # QoS 1: a publish with no PUBACK this long after it left is sent again, on a live connection,
        # as AWS IoT's device SDKs do (AWS IoT throttles by withholding the PUBACK); None: only after
        # a reconnect, as MQTT requires and paho does
        self.ack_timeout_s = ack_timeout_s if qos else None
        self.on_resend = on_resend or (lambda e: None)
        self._paced: set[_Connection] = set()
        self._unsent: set[_Connection] = set()
        self.on_send = on_send or (lambda e, t: None)
        self.on_ack = on_ack or (lambda e, t: None)
        self.on_fail = on_fail or (lambda e, cause: None)
        self.selector = selectors.DefaultSelector()
        self.connections: dict[str, _Connection] = {}
        self.counters = Counters()
        self._next_misc = time.monotonic() + MISC_INTERVAL_S
        self._reconnect_at: dict[str, float] = {}  # device id -> when to try again (monotonic)
        self._closing = False
        self._jitter = random.Random()

    def connect(self, device_id: str) -> None:
        """Open (or reopen) the device's connection; CONNACK arrives through `poll`."""
        self.connect_many([device_id])

    def connect_many(self, device_ids: list[str], parallel: int = 1) -> None:
        """Open connections. With `parallel` > 1 the blocking part (TCP, TLS handshake, CONNECT) runs in
        threads: against AWS IoT Core each handshake costs network round trips, so a serial fleet of
        thousands would take minutes to come up."""
        conns = [conn for conn in map(self._connection, device_ids) if conn.sock is None]
        for conn in conns:
            conn.online = True
            self._reconnect_at.pop(conn.device_id, None)
        if parallel > 1 and len(conns) > 1:
            with ThreadPoolExecutor(parallel, thread_name_prefix="mqtt-connect") as pool:
                opened = list(pool.map(self._open, conns))
        else:
            opened = [self._open(conn) for conn in conns]
        for conn, ok in zip(conns, opened, strict=True):
            if not ok:
                self.counters.connect_errors += 1
                self._retry_later(conn)
                continue
            sock = conn.client.socket()
            if sock is not None:
                conn.sock = sock
                self.selector.register(sock, selectors.EVENT_READ, conn)
                if conn.client.want_write():
                    self._unsent.add(conn)

    def _connection(self, device_id: str) -> _Connection:
        conn = self.connections.get(device_id)
        if conn is not None:
            return conn
        with warnings.catch_warnings():
            # Version 1 callbacks are deprecated but cost ~15 us less per acknowledgement (see below).
            warnings.simplefilter("ignore", DeprecationWarning)
            client = BulkClient(
                callback_api_version=CallbackAPIVersion.VERSION1,
                client_id=device_id,
                clean_session=self.clean_session,
                protocol=mqtt.MQTTv311,
                transport="websockets" if self.websocket_host else "tcp",
            )
        if self.websocket_host:
            client.ws_set_options(path="/mqtt", headers={"Host": self.websocket_host})
        if self.tls is not None:
            client.tls_set_context(self.tls.context(device_id))
        # with resends, a publish never acknowledged keeps paho's slot: the window here is the limit
        client.max_inflight_messages_set(0 if self.ack_timeout_s else self.window)
        client.max_queued_messages_set(0)
        if self.credentials is not None:
            client.username_pw_set(*self.credentials(device_id))
        conn = _Connection(device_id, client, self.topic.for_device(device_id))
        client.user_data_set(conn)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._done_writing
        self.connections[device_id] = conn
        return conn

    def _open(self, conn: _Connection) -> bool:
        """paho's blocking connect; safe in a worker thread, since each client is touched by one thread."""
        try:
            conn.client.connect(self.host, self.port, keepalive=KEEPALIVE_S)
        except OSError as exc:
            logger.debug("connect %s failed: %s", conn.device_id, exc)
            return False
        return True

    def disconnect(self, device_id: str) -> None:
        """Go offline as a device would: the connection drops; QoS 1 in flight stays in its session."""
        conn = self.connections.get(device_id)
        if conn is None:
            return
        conn.online = False
        conn.dropped, conn.tries = False, 0
        self._reconnect_at.pop(device_id, None)
        if conn.sock is None:
            return
        self._close_socket(conn)
        conn.client.disconnect()

    def send(self, emitted: Emitted) -> None:
        """Queue a publish; it goes out as soon as the device is connected and under its window."""
        conn = self.connections[emitted.device_id]
        if len(conn.pending) >= MAX_PENDING_PER_DEVICE:
            self._fail(emitted, FailureCause.QUEUE_FULL)
            return
        conn.pending.append(emitted)
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        while (conn.resends or conn.pending) and conn.connected and len(conn.inflight) < self.window:
            if self.max_rate is not None and not self._take_token(conn):
                self._paced.add(conn)
                return
            queue = conn.resends or conn.pending
            emitted = queue.popleft()
            info = conn.client.publish(conn.topic, emitted.payload, qos=self.qos)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                queue.appendleft(emitted)
                return
            conn.inflight[info.mid] = emitted
            if self.ack_timeout_s:
                conn.sent_at[info.mid] = time.monotonic()
            if queue is conn.pending:  # a resend is the same publish: its send and lateness count once
                self.counters.published += 1
                self.on_send(emitted, time.time())

    def _take_token(self, conn: _Connection) -> bool:
        """Token bucket holding a tenth of a second's budget, so no second carries more than the rate."""
        assert self.max_rate is not None
        now = time.monotonic()
        conn.tokens = min(max(1.0, self.max_rate / 10), conn.tokens + (now - conn.refilled) * self.max_rate)
        conn.refilled = now
        if conn.tokens < 1.0:
            return False
        conn.tokens -= 1.0
        return True

    def poll(self, timeout: float) -> None:
        """Serve every ready socket once; run paho's housekeeping about once a second."""
        if self._paced:
            timeout = min(timeout, 1.0 / self.max_rate if self.max_rate else timeout)
            paced, self._paced = self._paced, set()
            for waiting in paced:
                self._flush(waiting)
        self._write_unsent()
        for key, events in self.selector.select(timeout):
            conn: _Connection = key.data
            if events & selectors.EVENT_READ:
                conn.client.loop_read()
                # TLS (or our buffer) may hold more packets read already; the socket will not signal them
                while pending(conn.sock):
                    conn.client.loop_read()
            if events & selectors.EVENT_WRITE and conn.sock is not None:
                conn.client.loop_write()
            self._flush(conn)
        self._write_unsent()
        now = time.monotonic()
        if self._reconnect_at:
            due = [d for d, at in self._reconnect_at.items() if at <= now]
            if due:
                self.connect_many(due)
        if now >= self._next_misc:
            self._next_misc = now + MISC_INTERVAL_S
            for conn in self.connections.values():
                if conn.sock is not None:
                    conn.client.loop_misc()
                    if self.ack_timeout_s and conn.connected:
                        self._resend_unacknowledged(conn, now - self.ack_timeout_s)
                    self._flush(conn)

    def _resend_unacknowledged(self, conn: _Connection, sent_before: float) -> None:
        """Publishes that left before `sent_before` and got no PUBACK go again, first in line."""
        late = [mid for mid, at in conn.sent_at.items() if at < sent_before]
        for mid in late:
            del conn.sent_at[mid]
            _forget(conn.client, mid)
            emitted = conn.inflight.pop(mid, None)
            if emitted is not None:
                conn.resends.append(emitted)
                self.on_resend(emitted)

    def connecting(self) -> int:
        """Connections opened but not yet acknowledged by the broker."""
        return sum(1 for c in self.connections.values() if c.sock is not None and not c.connected)

    def in_flight(self) -> int:
        return sum(len(c.inflight) + len(c.pending) + len(c.resends) for c in self.connections.values())

    def close(self) -> None:
        """Disconnect everyone: each device sends its DISCONNECT and the broker, which ends the
        connection on it, closes first, so thousands of sockets leave no TIME_WAIT here; one that has
        not within CLOSE_WAIT_S is reset (SO_LINGER 0)."""
        self._closing = True
        closing: dict[str, _Connection] = {}
        for conn in self.connections.values():
            if conn.sock is not None:
                conn.client.loop_write()  # what paho holds goes out first
            if conn.sock is None:
                continue
            try:
                conn.sock.send(DISCONNECT_PACKET)  # through paho's socket: TLS and WebSocket frame it
                closing[conn.device_id] = conn
            except OSError:
                reset(self._close_socket(conn))
        deadline = time.monotonic() + CLOSE_WAIT_S
        while closing and (left := deadline - time.monotonic()) > 0:
            for key, _ in self.selector.select(min(left, 0.05)):
                conn = key.data
                if conn.device_id in closing and peer_closed(conn.sock):
                    del closing[conn.device_id]
                    self._close_socket(conn).close()
        for conn in closing.values():
            reset(self._close_socket(conn))
        for conn in self.connections.values():
            for emitted in [*conn.inflight.values(), *conn.resends, *conn.pending]:
                self._fail(emitted, FailureCause.UNACKED_AT_END)
            conn.inflight.clear()
            conn.sent_at.clear()
            conn.resends.clear()
            conn.pending.clear()
        self.selector.close()

    def _fail(self, emitted: Emitted, cause: FailureCause) -> None:
        self.counters.failed += 1
        self.counters.failed_by_cause[cause.value] += 1
        self.on_fail(emitted, cause.value)

    def _retry_later(self, conn: _Connection) -> None:
        """Schedule the next connection attempt of a device that wants to be online."""
        if self._closing or not conn.online:
            return
        conn.tries += 1
        delay = backoff_s(conn.tries, RECONNECT_BASE_S, RECONNECT_CAP_S, self._jitter, floor_s=RECONNECT_BASE_S)
        self._reconnect_at[conn.device_id] = time.monotonic() + delay

    def _close_socket(self, conn: _Connection) -> Any:
        """Forget the connection's socket (paho's still holds it); return it, or None."""
        sock, conn.sock = conn.sock, None
        if sock is not None:
            self.selector.unregister(sock)
            conn.write_watched = False
        if conn.connected:
            conn.connected = False
            self.counters.connected -= 1
        return sock

    # paho callbacks (called from loop_read/loop_write in this thread)
    # Version 1 callbacks: version 2 builds a ReasonCode and Properties object per acknowledgement,
    # which costs more than the rest of a QoS 0 publish.
    def _on_connect(self, client: mqtt.Client, conn: _Connection, flags: Any, reason: int) -> None:
        if reason != 0:
            self.counters.connect_errors += 1
            logger.warning("%s refused by the broker: %s", conn.device_id, reason)
            return
        conn.connected = True
        conn.tries = 0
        now = time.monotonic()
        for mid in conn.sent_at:  # paho sends these again on the new connection: their wait starts over
            conn.sent_at[mid] = now
        self.counters.connected += 1
        if conn.dropped:
            conn.dropped = False
            self.counters.reconnects += 1

    def _on_disconnect(self, client: mqtt.Client, conn: _Connection, reason: int) -> None:
        if conn.sock is not None:
            self._close_socket(conn)
        if self.qos == 0:
            for emitted in conn.inflight.values():
                self._fail(emitted, FailureCause.DISCONNECTED)
            conn.inflight.clear()
        if conn.online and not self._closing:
            conn.dropped = True
            self._retry_later(conn)

    def _on_publish(self, client: mqtt.Client, conn: _Connection, mid: int) -> None:
        conn.sent_at.pop(mid, None)
        emitted = conn.inflight.pop(mid, None)
        if emitted is not None:
            self.counters.acked += 1
            self.on_ack(emitted, time.time())

    def _write_unsent(self) -> None:
        """Write what was queued since the last pass, straight away.

        A socket is nearly always writable, so asking the selector first would cost two epoll_ctl
        calls per burst of publishes; only a socket that stays full is watched for writability.
        """
        unsent, self._unsent = self._unsent, set()
        for conn in unsent:
            if conn.sock is None:
                continue
            conn.client.loop_write()
            if conn.sock is not None and conn.client.want_write() and not conn.write_watched:
                conn.write_watched = True
                self.selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    def _want_write(self, client: mqtt.Client, conn: _Connection, sock: Any) -> None:
        self._unsent.add(conn)

    def _done_writing(self, client: mqtt.Client, conn: _Connection, sock: Any) -> None:
        if conn.write_watched and conn.sock is not None:
            conn.write_watched = False
            self.selector.modify(conn.sock, selectors.EVENT_READ, conn)
