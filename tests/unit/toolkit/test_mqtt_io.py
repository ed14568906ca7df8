"""toolkit/mqtt_io.py's buffered socket over a real socket pair: small reads from one large read."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from toolkit.mqtt_io import READ_CHUNK_BYTES, BufferedSocket, pending


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, BufferedSocket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        yield theirs, BufferedSocket(ours)
    finally:
        ours.close()
        theirs.close()


def test_small_reads_are_served_in_order_from_one_read_and_pending_says_what_waits(
    pair: tuple[socket.socket, BufferedSocket],
) -> None:
    theirs, ours = pair
    theirs.sendall(b"\x40\x02\x00\x07" * 3)
    assert ours.recv(1) == b"\x40"
    assert pending(ours) == 11, "the rest was read with the first byte and waits here"
    theirs.sendall(b"later")
    assert [ours.recv(1), ours.recv(2), ours.recv(100)] == [b"\x02", b"\x00\x07", b"\x40\x02\x00\x07" * 2]
    assert pending(ours) == 0
    assert ours.recv(100) == b"later", "what came after is read once the buffer is empty"


def test_an_empty_socket_raises_as_the_socket_does_and_an_ended_one_reads_empty(
    pair: tuple[socket.socket, BufferedSocket],
) -> None:
    theirs, ours = pair
    with pytest.raises(BlockingIOError):
        ours.recv(1)
    theirs.sendall(b"ab")
    theirs.shutdown(socket.SHUT_WR)
    assert ours.recv(1) == b"a" and ours.recv(1) == b"b"
    assert ours.recv(1) == b"", "the peer's end is an empty read, as from the socket itself"


def test_a_read_larger_than_the_chunk_is_not_cut_and_everything_else_is_the_sockets(
    pair: tuple[socket.socket, BufferedSocket],
) -> None:
    theirs, ours = pair
    theirs.setblocking(True)
    theirs.sendall(b"x" * (READ_CHUNK_BYTES + 10))
    got = b""
    while len(got) < READ_CHUNK_BYTES + 10:
        got += ours.recv(READ_CHUNK_BYTES + 10 - len(got))
    assert got == b"x" * (READ_CHUNK_BYTES + 10)
    assert ours.fileno() == ours._sock.fileno() and ours.send(b"y") == 1 and theirs.recv(1) == b"y"
    assert pending(theirs) == 0, "a plain socket holds nothing outside the kernel"
