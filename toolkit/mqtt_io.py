"""paho's socket I/O in bulk, for the clients that carry the pipeline's load.

paho reads a packet in three or more `recv` calls (its first byte, each byte of its length, the
rest) and writes each acknowledgement in a `send` of its own, after waking its network thread with
one more. On loopback each system call costs a few microseconds of kernel work for both ends, and
per message they were most of what the rule bridge and the broker spend. Here one `recv` takes what
the kernel holds, and one write carries the acknowledgements of a whole batch.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt

# One read takes up to this much: hundreds of small PUBLISH or PUBACK packets.
READ_CHUNK_BYTES = 64 * 1024
# PUBACK (MQTT 3.1.1 and 5, reason "success" left out as 5 allows): type 4, remaining length 2, packet id.
_PUBACK = struct.Struct("!BBH")
PUBACK_TYPE = 0x40
# DISCONNECT (MQTT 3.1.1, and 5 with reason "normal" left out): type 14, no remaining length.
DISCONNECT_PACKET = b"\xe0\x00"


class BufferedSocket:
    """A plain TCP socket whose small reads are served from one large read.

    `pending()` says bytes wait here rather than in the kernel, which a selector cannot see: paho's
    own loop asks it of TLS sockets already, and a loop of ours must ask it too.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._offset = 0

    def recv(self, size: int) -> bytes:
        if self._offset >= len(self._buffer):
            data = self._sock.recv(max(size, READ_CHUNK_BYTES))  # BlockingIOError, b"" at end: as the socket
            if len(data) <= size:
                return data
            self._buffer, self._offset = data, 0
        chunk = self._buffer[self._offset : self._offset + size]
        self._offset += len(chunk)
        return chunk

    def pending(self) -> int:
        return len(self._buffer) - self._offset

    def __getattr__(self, name: str) -> Any:  # send, fileno, close, setblocking, setsockopt ...
        return getattr(self._sock, name)


def pending(sock: object) -> int:
    """Bytes read from the network and not yet parsed (TLS or ours): a selector does not see them."""
    if isinstance(sock, BufferedSocket | ssl.SSLSocket):
        return sock.pending()
    return 0


class BulkClient(mqtt.Client):
    """A paho client whose plain TCP connection reads in bulk (TLS buffers its records already)."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if type(sock) is socket.socket:
            return BufferedSocket(sock)
        return sock


def ack_all(client: mqtt.Client, mids: Iterable[int]) -> None:
    """PUBACK these QoS 1 messages in one write (paho's `ack` makes two system calls for each).

    paho keeps no state for a QoS 1 acknowledgement, so queueing the packets as one is all `ack`
    would do; `_packet_queue` is paho's private method, held by the paho pin (<3) and the tests.
    """
    packets = b"".join(_PUBACK.pack(PUBACK_TYPE, 2, mid) for mid in mids)
    if packets:
        client._packet_queue(PUBACK_TYPE, packets, 0, 0)


def peer_closed(sock: Any) -> bool:
    """Read what a closing connection still holds (any of paho's sockets); True once the peer has
    ended it, by EOF or reset."""
    try:
        while sock.recv(READ_CHUNK_BYTES):
            pass
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False
    except OSError:
        return True
    return True


def reset(sock: Any) -> None:
    """Close with a reset (SO_LINGER 0), so no TIME_WAIT is left: paho's WebSocket wrapper holds
    the TCP socket; TCP, TLS and BufferedSocket take the option themselves."""
    with contextlib.suppress(OSError):
        getattr(sock, "_socket", sock).setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
