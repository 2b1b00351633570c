"""The connection's public surface seen from outside: ``ws.state`` through every phase,
``ws.outbox_bytes`` as frames queue and drain, ``ws.pong()`` / ``ws.ping()`` on the wire.

The peer is ``tests/wire.py``'s raw socket (exact frames, no library between); our server runs
in its own thread, and the test reads the server-side connection's properties from outside.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from ignitia_sync import Message, Router
from tests.waiting import wait_for
from tests.wire import Peer, frame

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def test_state_goes_open_closing_draining_closed_with_the_peer(serve):
    made: list[Any] = []

    def closer(ws: Any) -> None:
        made.append(ws)
        ws.recv()  # the peer's "close, please"
        ws.close(4000, "bye")
        for _ in ws:
            pass

    server = serve(Router().websocket("/closer", closer), close_timeout=10)
    peer = Peer(server.address)
    try:
        peer.upgrade("/closer")
        wait_for(lambda: made, "the handler")
        ws = made[0]
        assert ws.state == "open" and not ws.closed
        peer.send(frame(TEXT, b"close, please"))
        assert peer.read_frame()[:2] == (CLOSE, struct.pack("!H", 4000) + b"bye")
        assert ws.state == "closing" and ws.closed  # our Close is out; the peer has not answered
        peer.send(frame(CLOSE, struct.pack("!H", 4000)))
        assert peer.at_eof()  # the server shut its side down after the handshake ...
        wait_for(lambda: ws.state == "draining", "draining")  # ... and waits for our EOF
    finally:
        peer.close()
    wait_for(lambda: ws.state == "closed", "closed once the peer's EOF came")
    assert ws.close_code == 4000 and ws.close_reason == "bye"


def small_window_peer(address: tuple[str, int]) -> Peer:
    """A Peer whose receive buffer is small from the SYN on: the server's writes back up quickly."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(10)
    sock.connect(address)
    peer = Peer.__new__(Peer)
    peer.sock, peer.buffer = sock, b""
    return peer


def test_outbox_bytes_counts_exactly_the_queued_frames_until_the_peer_reads_them(serve):
    made: list[Any] = []
    seen: list[tuple[int, int, int]] = []
    payload = b"x" * 65536  # one frame: 10 bytes of head (64-bit length) + the payload

    def flood(ws: Any) -> None:
        made.append(ws)
        assert ws.outbox_bytes == 0
        sent = 0
        while ws.outbox_bytes < 16 << 20:  # far more than the kernel's buffers can take
            ws.send_nowait(Message.binary(payload))
            sent += 1
        before = ws.outbox_bytes
        ws.send_nowait(Message.binary(payload))  # no yield in between: nothing is written meanwhile
        seen.append((before, ws.outbox_bytes, sent + 1))
        ws.recv()

    server = serve(Router().websocket("/flood", flood), outbox_limit=64 << 20)
    peer = small_window_peer(server.address)
    try:
        peer.upgrade("/flood")
        wait_for(lambda: seen, "the flood")
        before, after, sent = seen[0]
        assert after - before == 10 + len(payload)
        assert made[0].outbox_bytes > 8 << 20  # the peer has read nothing: most of it still waits
        frames = 0
        while made[0].outbox_bytes:  # the peer reads: the queue drains to nothing
            opcode, data, _ = peer.read_frame()
            assert (opcode, len(data)) == (BINARY, len(payload))
            frames += 1
        for _ in range(sent - frames):  # the rest was already in the kernel's buffers
            opcode, data, _ = peer.read_frame()
            assert (opcode, len(data)) == (BINARY, len(payload))
        peer.send(frame(CLOSE, struct.pack("!H", 1000)))
    finally:
        peer.close()


def test_an_unsolicited_pong_and_a_ping_reach_the_peer_as_control_frames(serve):
    heard: list[Any] = []

    def beat(ws: Any) -> None:
        ws.pong(b"beat")
        ws.pong("\u00e9t\u00e9")  # a str is UTF-8 encoded
        ws.ping(b"are you there")
        heard.append(ws.recv(timeout=5))  # the peer's pong comes through recv
        ws.send_text("done")
        ws.recv()

    server = serve(Router().websocket("/beat", beat), ping_interval=None)
    peer = Peer(server.address)
    try:
        peer.upgrade("/beat")
        assert peer.read_frame()[:2] == (PONG, b"beat")
        assert peer.read_frame()[:2] == (PONG, "\u00e9t\u00e9".encode())
        assert peer.read_frame()[:2] == (PING, b"are you there")
        peer.send(frame(PONG, b"are you there"))
        assert peer.read_frame()[:2] == (TEXT, b"done")
        assert heard == [Message.pong(b"are you there")]
        peer.send(frame(CLOSE, struct.pack("!H", 1000)))
        assert peer.read_frame()[0] == CLOSE
    finally:
        peer.close()
