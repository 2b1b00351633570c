"""Regression tests for the connection core (connection-review.md, H1-H8, M1-M5, API).

Each one drives a real server over real sockets: a raw peer that sends exact bytes and
parses every frame, or an independent client (websockets). Each failed on the core that
had three write paths and eight teardown functions.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

import gevent
import gevent.socket
import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.sync.client import connect

from ignitia_sync import ConnectionClosed, Headers, Message, Router, WebSocketConnection
from tests.apps import ECHO, echo
from tests.conftest import url
from tests.subprocess_server import ROOT, free_port
from tests.waiting import wait_for
from tests.wire import Peer, frame


def small_buffer_peer(server: Any, path: str) -> Peer:
    """A raw peer whose receive buffer is small: the server meets backpressure early."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(server.address)
    peer = Peer.__new__(Peer)
    peer.sock, peer.buffer = sock, b""
    peer.upgrade(path)
    return peer


def frames_until_close(peer: Peer) -> list[tuple[int, bytes]]:
    """Every frame until (and with) the server's Close; the stream must parse cleanly."""
    seen = []
    while True:
        opcode, payload, first = peer.read_frame()
        assert first & 0x70 == 0 and opcode in (1, 2, 8, 9, 10), f"corrupt frame header {first:#x}"
        seen.append((opcode, payload))
        if opcode == 8:
            return seen


# -- H1: one ordered stream ------------------------------------------------------------


def test_a_direct_send_never_lands_inside_a_half_written_broadcast_frame(serve):
    big = b"A" * 3_000_000
    opened: list[WebSocketConnection] = []

    def handler(ws: WebSocketConnection) -> None:
        opened.append(ws)
        ws.join("room")
        assert ws.recv() == Message.text("go")
        ws.registry.broadcast(Message.binary(big), room="room")  # partly written: the peer reads slowly
        ws.send_text("X")  # waits for its turn behind the broadcast
        ws.close(4000, "done")

    server = serve(Router().websocket("/r", handler), outbox_limit=8_000_000)
    peer = small_buffer_peer(server, "/r")
    peer.send(frame(0x1, b"go"))
    # The broadcast is half out and the handler's send() waits behind it: only then read.
    wait_for(lambda: opened and opened[0]._transport._send_waiters, "the handler's send() to wait")
    assert frames_until_close(peer) == [(2, big), (1, b"X"), (8, struct.pack("!H", 4000) + b"done")]


# -- H2: a push-only handler keeps its connection ----------------------------------------


def test_a_handler_that_never_reads_is_not_dropped_by_keepalive(serve):
    def ticker(ws: WebSocketConnection) -> None:
        for n in range(150):  # 3 s: 60 keepalive rounds against an inbox of 2
            ws.send_text(f"tick {n}")
            gevent.sleep(0.02)

    server = serve(Router().websocket("/ticks", ticker), ping_interval=0.05, ping_timeout=1.0, max_queue=2)
    ticks = 0
    with connect(url(server, "/ticks")) as client:  # answers every ping, as browsers do
        try:
            while True:
                client.recv(timeout=10)
                ticks += 1
        except ClientClosed:
            pass
        assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 1000
    assert ticks == 150


# -- H3: a ping flood from a peer that never reads ----------------------------------------


def test_a_ping_flood_from_a_peer_that_never_reads_meets_backpressure(serve):
    server = serve(ECHO)  # echo drains the inbox: only the pongs could pile up
    peer = small_buffer_peer(server, "/echo")
    pings = frame(0x9, b"p" * 125) * 100
    peer.sock.settimeout(3)
    sent = 0
    with pytest.raises(TimeoutError):
        while sent < 800_000:  # 105 MB of pings; the peer reads nothing meanwhile
            peer.sock.sendall(pings)
            sent += 100
    # Pongs went out while the kernel took them; then the latest one waited, the writer
    # made no progress, reading paused: the flood stopped at the peer's own socket.
    assert sent < 800_000 and server.stats()["outbox_bytes"] == 0
    with connect(url(server, "/echo")) as other:  # everyone else is served meanwhile
        other.send("still here")
        assert other.recv(timeout=5) == "still here"
    pongs: list[int] = []

    def read() -> None:  # the peer reads again: the connection is healthy
        peer.sock.settimeout(20)
        while True:
            opcode, payload, _ = peer.read_frame()
            if opcode != 0xA:
                pongs.append(-1 if (opcode, payload) == (1, b"end") else -2)
                return
            pongs.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    peer.sock.sendall(frame(0x1, b"end"))
    reader.join(30)
    assert pongs[-1] == -1 and 1 <= len(pongs) - 1 <= sent
    peer.close()


# -- H4/H5: the closing handshake ------------------------------------------------------


def test_the_peers_close_is_answered_after_the_queued_messages(serve):
    done, queued = threading.Event(), threading.Event()

    def handler(ws: WebSocketConnection) -> None:
        assert ws.recv() == Message.text("go")
        # Together more than the kernel's buffers take (4 MiB here): the second stays in our queue.
        ws.send_nowait(Message.text("a" * 4_000_000))
        ws.send_nowait(Message.text("b" * 4_000_000))
        queued.set()
        ws.recv()
        done.set()

    server = serve(Router().websocket("/q", handler), outbox_limit=16_000_000)
    peer = small_buffer_peer(server, "/q")
    peer.send(frame(0x1, b"go"))
    assert queued.wait(10)
    peer.send(frame(0x8, struct.pack("!H", 1000)))  # while both messages are still queued (we read nothing yet)
    got = frames_until_close(peer)
    assert got == [(1, b"a" * 4_000_000), (1, b"b" * 4_000_000), (8, struct.pack("!H", 1000))]
    assert peer.at_eof() and done.wait(5)


def test_nothing_follows_our_close_not_even_a_broadcast(serve):
    closed = threading.Event()

    def handler(ws: WebSocketConnection) -> None:
        ws.join("room")
        assert ws.recv() == Message.text("go")
        # More than the kernel's buffers take (2 MB fitted whole: the sender was done before the close).
        sender = gevent.spawn(ws.send_bytes, b"B" * 8_000_000)  # blocks: the peer reads slowly
        wait_for(lambda: ws._transport._send_waiters, "the sender to wait")  # (in this hub: gevent.sleep)
        ws.close(4000, "bye")
        assert ws.registry.broadcast(Message.text("late"), room="room") == 0
        with pytest.raises(ConnectionClosed):
            ws.send_text("later")
        closed.set()
        sender.join()

    server = serve(Router().websocket("/c", handler))
    peer = small_buffer_peer(server, "/c")
    peer.send(frame(0x1, b"go"))
    assert closed.wait(10)  # all of it happened while the peer read nothing
    got = frames_until_close(peer)
    assert got == [(2, b"B" * 8_000_000), (8, struct.pack("!H", 4000) + b"bye")]
    peer.send(frame(0x8, struct.pack("!H", 4000)))
    assert peer.read_body() == b""  # and then nothing but EOF


# -- H6: application ids never collide with automatic ones ---------------------------------


def test_identify_with_a_number_never_collides_with_a_later_connection(serve):
    found: list[bool] = []

    def handler(ws: WebSocketConnection) -> None:
        ws.send_text(ws.id)
        for message in ws:
            if isinstance(message, Message.Text) and message.data.startswith("identify "):
                ws.registry.identify(ws, message.data.split()[1])
                ws.send_text("ok")
            elif message == Message.text("check"):
                found.append(ws.registry.get(ws.id) is ws)
                ws.send_text("checked")

    server = serve(Router().websocket("/id", handler))
    with connect(url(server, "/id")) as alice:
        automatic = alice.recv(timeout=5)
        assert automatic.startswith("#")
        next_number = str(int(automatic.lstrip("#")) + 1)
        alice.send(f"identify {next_number}")
        assert alice.recv(timeout=5) == "ok"
        with connect(url(server, "/id")) as stranger:
            assert stranger.recv(timeout=5) == f"#{next_number}"
            alice.send("check")
            assert alice.recv(timeout=5) == "checked"
    assert found == [True]


def test_identify_refuses_the_automatic_namespace(serve):
    errors: list[str] = []

    def handler(ws: WebSocketConnection) -> None:
        try:
            ws.registry.identify(ws, "#1")
        except ValueError as exc:
            errors.append(str(exc))
        ws.send_text("done")

    server = serve(Router().websocket("/id", handler))
    with connect(url(server, "/id")) as client:
        assert client.recv(timeout=5) == "done"
    assert len(errors) == 1


# -- H7: a broadcast from an OS thread ---------------------------------------------------


def test_a_broadcast_from_another_os_thread_is_delivered_and_later_ones_too(serve):
    def handler(ws: WebSocketConnection) -> None:
        ws.join("room")
        ws.send_text("joined")
        for message in ws:
            if isinstance(message, Message.Text):
                ws.registry.broadcast(Message.text(f"hub {message.data}"), room="room")

    server = serve(Router().websocket("/t", handler))
    with connect(url(server, "/t")) as client:
        assert client.recv(timeout=5) == "joined"
        assert threading.current_thread() is threading.main_thread()  # not the server's thread
        assert server.registry.broadcast(Message.text("from a thread"), room="room") == 0
        assert client.recv(timeout=5) == "from a thread"
        for n in range(5):
            client.send(str(n))
        assert [client.recv(timeout=5) for _ in range(5)] == [f"hub {n}" for n in range(5)]


# -- H8 and signals: stopping from a handler, SIGTERM for ignitia() ------------------------------


def start_script(port: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "scripts", "signal_server.py"), str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    assert process.stdout is not None
    for line in process.stdout:  # the library's own lines (on stderr, merged here) may come first
        if line.strip() == "serving":
            return process
    raise AssertionError("the script ended before it was serving")


def test_stop_from_a_handler_finishes_and_serve_forever_returns():
    port = free_port()
    process = start_script(port)
    try:
        with connect(f"ws://127.0.0.1:{port}/admin", open_timeout=10) as client:
            assert client.recv(timeout=5) == "stopping"
            with pytest.raises(ClientClosed):
                client.recv(timeout=10)
            assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 1001
        assert process.wait(timeout=20) == 0
        assert process.stdout is not None and "exited cleanly" in process.stdout.read()
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_drains_a_script_that_ends_with_ignitia(signum):
    port = free_port()
    process = start_script(port)
    try:
        with connect(f"ws://127.0.0.1:{port}/queue", open_timeout=10) as client:
            got = [client.recv(timeout=10)]  # the handler ran: all three are queued before "ready"
            process.send_signal(signum)
            with pytest.raises(ClientClosed):
                while True:
                    got.append(client.recv(timeout=10))
            assert got == ["queued 0", "queued 1", "queued 2", "ready"]
            assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 1001
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
        process.wait()


# -- M1/M5: the end of the closing handshake --------------------------------------------------


def test_closing_while_a_bad_frame_arrives_raises_nothing_and_fakes_no_close(serve, capfd):
    seen: list[Any] = []

    def handler(ws: WebSocketConnection) -> None:
        seen.append(ws.recv())
        ws.close(1000)
        seen.append(ws.recv())

    server = serve(Router().websocket("/m", handler))
    peer = Peer(server.address)
    peer.upgrade("/m")
    peer.send(frame(0x1, b"a") + frame(0x3, b"bad"))  # a message, then an unknown opcode
    assert peer.read_close() == (1000, "")
    assert peer.at_eof()
    wait_for(lambda: len(seen) == 2)
    assert seen == [Message.text("a"), None]  # not Close(1002, "Invalid opcode 0x3")
    assert "Traceback" not in capfd.readouterr().err


def test_a_handler_still_working_on_the_last_message_gets_its_answer_out(serve):
    def handler(ws: WebSocketConnection) -> None:
        for message in ws:
            gevent.sleep(0.3)  # a database call
            ws.send(message)

    server = serve(Router().websocket("/slow", handler))
    peer = Peer(server.address)
    peer.upgrade("/slow")
    peer.send(frame(0x1, b"answer me") + frame(0x1, b"\xff"))  # then invalid UTF-8
    assert frames_until_close(peer) == [(1, b"answer me"), (8, struct.pack("!H", 1007) + b"invalid frame payload data")]


# -- M2/M3: sending checks at once, and a Close goes through close() ------------------------


def test_send_nowait_refuses_a_bad_message_at_once_and_loses_nothing(serve):
    def handler(ws: WebSocketConnection) -> None:
        ws.send_nowait(Message.text("one"))
        with pytest.raises(ValueError):
            ws.send_nowait(Message.ping(b"x" * 200))
        with pytest.raises(TypeError):
            ws.send_nowait("not a message")  # type: ignore[arg-type]
        ws.send_nowait(Message.text("two"))
        ws.send_nowait(Message.text("three"))
        ws.send(Message.close_with_reason(4001, "through send"))

    server = serve(Router().websocket("/n", handler))
    with connect(url(server, "/n")) as client:
        assert [client.recv(timeout=5) for _ in range(3)] == ["one", "two", "three"]
        with pytest.raises(ClientClosed):
            client.recv(timeout=5)
        assert client.protocol.close_rcvd is not None
        assert (client.protocol.close_rcvd.code, client.protocol.close_rcvd.reason) == (4001, "through send")
    assert server.stats()["outbox_bytes"] == 0


def test_a_close_with_a_code_one_may_not_send_is_refused_through_send_too(serve):
    errors: list[type[BaseException]] = []

    def handler(ws: WebSocketConnection) -> None:
        for code in (999, 70000):
            try:
                ws.send(Message.close_with_reason(code, ""))
            except Exception as exc:
                errors.append(type(exc))
        ws.send_text("still open")

    server = serve(Router().websocket("/c", handler))
    with connect(url(server, "/c")) as client:
        assert client.recv(timeout=5) == "still open"
    assert errors == [ValueError, ValueError]


# -- M4: every ending is accounted for ---------------------------------------------------------


def test_a_handler_killed_at_shutdown_is_still_closed_and_counted(serve):
    def stubborn(ws: WebSocketConnection) -> None:
        while True:
            gevent.sleep(0.05)  # ignores shutdown_event and the closed connection

    server = serve(Router().websocket("/s", stubborn), shutdown_grace=0.1, close_timeout=0.5)
    peer = Peer(server.address)
    peer.upgrade("/s")
    wait_for(lambda: server.stats()["open_connections"] == 1)
    server.stop(timeout=0.3)
    assert peer.read_close() == (1001, "Server shutdown")
    stats = server.stats()
    assert stats["open_connections"] == 0 and stats["close_codes"] == {1001: 1}
    assert peer.at_eof()


# -- API: recv(timeout), send(str|bytes), waiting for a message or shutdown ---------------------------


def test_recv_timeout_raises_timeouterror_and_send_takes_str_and_bytes(serve):
    def handler(ws: WebSocketConnection) -> None:
        try:
            ws.recv(timeout=0.05)
        except TimeoutError:
            ws.send("timed out")
        ws.send(b"\x01\x02")
        assert ws.recv_timeout(0.05) is None and not ws.closed
        ws.send("done")

    server = serve(Router().websocket("/api", handler))
    with connect(url(server, "/api")) as client:
        assert client.recv(timeout=5) == "timed out"
        assert client.recv(timeout=5) == b"\x01\x02"
        assert client.recv(timeout=5) == "done"  # the handler's own checks ran before we close


def test_recv_until_shutdown_wakes_at_shutdown_without_polling(serve):
    def handler(ws: WebSocketConnection) -> None:
        assert ws.recv(until_shutdown=True) is None
        assert ws.shutting_down and not ws.closed
        ws.send_text("goodbye")

    server = serve(Router().websocket("/w", handler), shutdown_grace=5)
    with connect(url(server, "/w")) as client:
        wait_for(lambda: server.stats()["open_connections"] == 1)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        assert client.recv(timeout=5) == "goodbye"
        stopper.join(10)


def test_idle_timeout_counts_data_messages_not_pongs(serve):
    server = serve(Router().websocket("/idle", lambda ws: [None for _ in ws]), ping_interval=0.05, idle_timeout=0.4)
    with connect(url(server, "/idle")) as client:  # answers every ping
        with pytest.raises(ClientClosed):
            client.recv(timeout=10)
        assert client.protocol.close_rcvd is not None
        assert (client.protocol.close_rcvd.code, client.protocol.close_rcvd.reason) == (1001, "idle timeout")


def test_data_messages_reset_the_idle_timer(serve):
    """A connection that keeps talking outlives idle_timeout many times over; silence then closes it."""

    server = serve(Router().websocket("/chatty", echo), idle_timeout=0.3)
    with connect(url(server, "/chatty")) as client:
        talked_for = time.monotonic()
        sent = 0
        while time.monotonic() - talked_for < 1.5:  # five idle timeouts' worth of talking
            client.send(str(sent))
            assert client.recv(timeout=5) == str(sent)  # open: every message answered
            sent += 1
            time.sleep(0.05)
        with pytest.raises(ClientClosed):  # then silence: closed for being idle
            client.recv(timeout=10)
        assert (client.protocol.close_rcvd.code, client.protocol.close_rcvd.reason) == (1001, "idle timeout")


def test_a_bad_route_option_fails_when_the_route_is_registered():
    with pytest.raises(ValueError, match="outbox_limit"):
        Router().websocket("/x", lambda ws: None, outbox_limit=0)


# -- the reusable core: another host, a stdlib socket, the handshake from a WSGI environ ------------


def test_another_host_serves_a_connection_from_an_environ_over_a_stdlib_socketpair():
    from ignitia_sync import ConnectionSettings, Handler, Request
    from ignitia_sync.broadcast.registry import Registry
    from ignitia_sync.hosting.serve import serve_connection
    from ignitia_sync.sansio.server_handshake import accept

    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/chat/caf\xc3\xa9", "QUERY_STRING": "room=1",
        "HTTP_HOST": "x", "HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13", "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
        "REMOTE_ADDR": "10.1.2.3", "REMOTE_PORT": "4000",
    }
    request = Request.from_environ(environ)
    assert (request.path, request.query, request.client_ip) == ("/chat/café", {"room": "1"}, "10.1.2.3")
    settings = ConnectionSettings(ping_interval=None, compression=None)
    accepted = accept(request, settings)
    assert accepted.response.startswith(b"HTTP/1.1 101 ")
    server_side, client_side = socket.socketpair()  # stdlib sockets: wrapped, never read blocking
    closed: list[int | None] = []

    def handler(ws: WebSocketConnection) -> None:
        ws.send_text(f"hello {ws.request.path}")
        for message in ws:
            if isinstance(message, Message.Text):
                ws.send_text(message.data.upper())

    def host() -> None:
        ws = WebSocketConnection(server_side, request, accepted.protocol, settings=settings)
        greenlet = gevent.spawn(
            serve_connection, ws, Handler(handler), {}, registry=Registry(),
            on_closed=lambda ws: closed.append(ws.close_code),
        )
        greenlet.join(20)

    thread = threading.Thread(target=host)
    thread.start()
    peer = Peer.__new__(Peer)
    peer.sock, peer.buffer = client_side, b""
    client_side.settimeout(10)
    assert peer.read_frame()[:2] == (1, "hello /chat/café".encode())
    peer.send(frame(0x1, b"shout"))
    assert peer.read_frame()[:2] == (1, b"SHOUT")
    peer.send(frame(0x8, struct.pack("!H", 1000)))
    assert peer.read_close() == (1000, "")
    assert peer.at_eof()
    client_side.close()  # our FIN ends the server's read to EOF at once
    thread.join(20)
    assert closed == [1000]


def test_a_stdlib_ssl_socket_is_refused():
    import ssl

    from ignitia_sync.connection.transport import gevent_socket

    context = ssl.create_default_context()
    with socket.socket() as plain:
        wrapped = context.wrap_socket(plain, do_handshake_on_connect=False, server_hostname="x")
        with pytest.raises(TypeError, match=r"gevent\.ssl"):
            gevent_socket(wrapped)
        wrapped.close()


def test_a_middleware_that_raises_handshakeerror_gets_its_status(serve):
    from ignitia_sync import HandshakeError, ServerSettings

    def no_entry(request: Any) -> None:
        raise HandshakeError(403, "members only")

    app = Router().middleware(no_entry).websocket("/x", lambda ws: None)
    server = serve(app, settings=ServerSettings(max_queue=4))
    assert server.settings.max_queue == 4
    peer = Peer(server.address)
    peer.send(b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    status, _ = peer.read_head()
    assert status == 403 and b"members only" in peer.read_body()


# -- found by the independent review of the new core -------------------------------------------


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames, pos = [], 0
    while pos < len(data):
        first, length, pos = data[pos], data[pos + 1] & 0x7F, pos + 2
        if length == 126:
            (length,), pos = struct.unpack("!H", data[pos : pos + 2]), pos + 2
        elif length == 127:
            (length,), pos = struct.unpack("!Q", data[pos : pos + 8]), pos + 8
        frames.append((first & 0x0F, data[pos : pos + length]))
        pos += length
    assert pos == len(data), "a frame was cut"
    return frames


def test_a_slow_consumer_cut_keeps_the_frames_on_the_wire_and_its_close(capfd):
    """The cut happens while the writer greenlet is in the middle of a chunk."""
    from ignitia_sync.connection.inbox import Inbox
    from ignitia_sync.connection.transport import Phase, Transport
    from ignitia_sync.sansio.protocol import WebSocketProtocol, encode_frame

    def scenario() -> tuple[list[tuple[int, bytes]], Phase]:
        ours, theirs = gevent.socket.socketpair()
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        transport = Transport(ours, WebSocketProtocol(), Inbox(16, lambda: None), outbox_limit=1_000_000, close_timeout=3)
        transport.start()
        frames = [encode_frame(Message.binary(bytes([letter]) * 200_000)) for letter in b"ABC"]
        for data in frames:
            transport.push(data, len(data))
        gevent.sleep(0.05)  # the writer greenlet is blocked mid-chunk
        got = b""
        while len(got) < len(frames[0]):
            got += theirs.recv(len(frames[0]) - len(got))
        gevent.sleep(0.05)
        big = encode_frame(Message.binary(b"D" * 900_000))
        assert not transport.push(big, len(big))  # over outbox_limit: a slow consumer
        theirs.settimeout(5)
        while chunk := theirs.recv(65536):
            got += chunk
        theirs.sendall(b"")
        return parse_frames(got), transport.phase

    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(scenario()))
    thread.start()
    thread.join(30)
    frames, _ = result[0]
    assert frames[0] == (2, b"A" * 200_000)
    assert frames[-1] == (8, struct.pack("!H", 1008) + b"slow consumer")
    assert all(opcode == 2 and len(payload) == 200_000 for opcode, payload in frames[1:-1])
    assert "Traceback" not in capfd.readouterr().err


def test_a_send_to_a_peer_that_vanished_fails_at_once_even_behind_queued_frames():
    from ignitia_sync.connection.inbox import Inbox
    from ignitia_sync.connection.transport import Transport
    from ignitia_sync.sansio.protocol import WebSocketProtocol, encode_frame

    def scenario() -> str:
        ours, theirs = gevent.socket.socketpair()
        transport = Transport(ours, WebSocketProtocol(), Inbox(16, lambda: None), send_timeout=None)
        transport.start()
        data = encode_frame(Message.text("x"))
        transport.push(data, len(data))
        transport.push(data, len(data))  # queued: its flush comes later in this turn
        theirs.close()  # the peer is gone
        try:
            with gevent.Timeout(5):
                for _ in range(3):
                    transport.send(data)
        except ConnectionClosed:
            return "closed"
        except gevent.Timeout:
            return "hung"
        return "sent"

    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(scenario()))
    thread.start()
    thread.join(20)
    assert result == ["closed"]


def test_a_peer_that_reads_slowly_and_pings_is_not_dropped_by_keepalive():
    """A pong waiting behind a busy writer must not stop us reading the peer's keepalive pongs."""
    from ignitia_sync import ConnectionSettings, Handler, Request
    from ignitia_sync.hosting.serve import serve_connection
    from ignitia_sync.sansio.protocol import WebSocketProtocol

    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    outcome: dict[str, Any] = {}

    def handler(ws: WebSocketConnection) -> None:
        assert ws.recv() == Message.text("go")
        for _ in range(100):
            ws.send_nowait(Message.binary(b"x" * 10_000))
        for _message in ws:
            pass

    def host() -> None:
        settings = ConnectionSettings(ping_interval=0.2, ping_timeout=0.6, outbox_limit=8_000_000, compression=None)
        ws = WebSocketConnection(ours, Request("GET", "/drain", {}, Headers([])), WebSocketProtocol(), settings=settings)
        serve_connection(ws, Handler(handler), {}, on_closed=lambda ws: outcome.update(code=ws.close_code))

    thread = threading.Thread(target=host)
    thread.start()
    peer = Peer.__new__(Peer)
    peer.sock, peer.buffer = theirs, b""
    theirs.settimeout(10)
    peer.send(frame(0x1, b"go"))
    time.sleep(0.1)
    peer.send(frame(0x9, b"are you there"))  # a ping while the server drains its queue
    received = 0
    while received < 100:
        opcode, payload, _ = peer.read_frame()
        if opcode == 9:
            peer.send(frame(0xA, payload))  # a well-behaved peer answers keepalive pings
        elif opcode == 2:
            received += 1
            time.sleep(0.015)  # slow, but steady: the drain outlasts ping_timeout
        else:
            assert opcode == 0xA, (opcode, payload)  # our ping's pong, not a Close 1011
    peer.send(frame(0x8, struct.pack("!H", 1000)))
    assert peer.read_close() == (1000, "")
    theirs.close()
    thread.join(20)
    assert outcome == {"code": 1000}
