"""The server end to end: real sockets, real peers (websockets, websocket-client, raw bytes)."""

from __future__ import annotations

import socket
import struct
import threading

import gevent
import pytest
import websocket  # websocket-client
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from ignitia_sync import CloseFrame, Message, Router, Server, WebSocketConnection
from tests.apps import ECHO, echo
from tests.conftest import url
from tests.waiting import wait_for
from tests.wire import Peer, deflate, frame, handshake_bytes

# -- talking to real clients ---------------------------------------------------------


def test_echo_with_websockets_client(serve):
    server = serve(ECHO)
    with connect(url(server, "/echo")) as client:
        client.send("hello")
        assert client.recv() == "hello"
        client.send(b"\x00\xff")
        assert client.recv() == b"\x00\xff"
        big = "é" * 70000  # 140 kB: a 64-bit length, compressed both ways
        client.send(big)
        assert client.recv() == big


def test_echo_with_websocket_client_uncompressed(serve):
    server = serve(ECHO)
    client = websocket.create_connection(url(server, "/echo"), timeout=10)
    try:
        payload = bytes(range(256)) * 300  # 76,800 bytes: 64-bit length frame
        client.send_binary(payload)
        assert client.recv() == payload
        client.send("x" * 200)  # 16-bit length
        assert client.recv() == "x" * 200
    finally:
        client.close()


def test_fragmented_message_with_ping_in_the_middle(serve):
    server = serve(ECHO)
    peer = Peer(server.address)
    peer.upgrade("/echo")
    peer.send(frame(0x1, b"hel", fin=False))
    peer.send(frame(0x9, b"mid"))
    peer.send(frame(0x0, b"lo ", fin=False))
    peer.send(frame(0x0, "wörld".encode()))
    assert peer.read_frame()[:2] == (0xA, b"mid")
    assert peer.read_frame()[:2] == (0x1, "hello wörld".encode())
    peer.close()


def test_compressed_fragmented_message_with_ping_in_the_middle(serve):
    server = serve(ECHO)
    peer = Peer(server.address)
    head = peer.upgrade("/echo", "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n")
    assert "permessage-deflate" in head
    body = deflate(b"abcabcabc" * 100)
    peer.send(frame(0x2, body[:5], fin=False, rsv1=True))
    peer.send(frame(0x9, b"p"))
    peer.send(frame(0x0, body[5:]))
    assert peer.read_frame()[:2] == (0xA, b"p")
    opcode, payload, first = peer.read_frame()
    assert opcode == 0x2 and first & 0x40  # compressed reply
    assert zlib_inflate(payload) == b"abcabcabc" * 100
    peer.close()


def zlib_inflate(payload: bytes) -> bytes:
    import zlib

    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


def test_compression_can_be_turned_off(serve):
    server = serve(ECHO, compression=None)
    peer = Peer(server.address)
    head = peer.upgrade("/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert "Sec-WebSocket-Extensions" not in head
    peer.close()


def test_two_hundred_concurrent_clients_lose_nothing(serve):
    server = serve(ECHO)
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with connect(url(server, "/echo"), compression=None) as ws:
                for i in range(20):
                    ws.send(f"{n}:{i}")
                for i in range(20):
                    assert ws.recv(timeout=20) == f"{n}:{i}"
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]


# -- the upgrade and its refusals -------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "header"),
    [
        (handshake_bytes("/nowhere"), 404, None),
        (handshake_bytes("/echo").replace(b"GET", b"POST", 1), 405, "Allow: GET"),
        (b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 426, "Upgrade: websocket"),
        (handshake_bytes("/echo", version="8"), 426, "Sec-WebSocket-Version: 13"),
        (handshake_bytes("/echo", key="not-base64!"), 400, None),
        (handshake_bytes("/echo").replace(b"Sec-WebSocket-Key", b"X-Nothing"), 400, None),
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431, None),
        (b"BLAH\r\n\r\n", 400, None),
    ],
    ids=["unknown-path", "wrong-method", "plain-get", "bad-version", "bad-key", "no-key", "huge-head", "garbage"],
)
def test_refusals_have_precise_status_body_and_log(serve, caplog, request_bytes, status, header):
    server = serve(ECHO)
    peer = Peer(server.address)
    peer.send(request_bytes)
    got, head = peer.read_head()
    body = peer.read_body()
    assert got == status
    if header:
        assert header in head
    assert "Content-Type: text/plain" in head and body.strip()
    assert any(f": {status} " in r.getMessage() for r in caplog.records)
    peer.close()
    with connect(url(server, "/echo")) as client:  # still serving
        client.send("ok")
        assert client.recv() == "ok"


def test_websockets_client_sees_404(serve):
    server = serve(ECHO)
    with pytest.raises(InvalidStatus) as info:
        connect(url(server, "/missing"))
    assert info.value.response.status_code == 404


def test_slow_handshake_is_dropped_after_handshake_timeout(serve, caplog):
    server = serve(ECHO, handshake_timeout=0.3)
    peer = Peer(server.address)
    peer.send(b"GET /echo HTTP/1.1\r\n")
    assert peer.sock.recv(100) == b""  # the server hung up without an answer
    assert any("timed out" in r.getMessage() for r in caplog.records)


def test_first_frame_in_the_same_packet_as_the_request(serve):
    server = serve(ECHO)
    peer = Peer(server.address)
    peer.send(handshake_bytes("/echo") + frame(0x1, b"early"))
    assert peer.read_head()[0] == 101
    assert peer.read_frame()[:2] == (0x1, b"early")


def test_a_close_in_the_same_packet_as_the_request_is_echoed(serve):
    server = serve(ECHO)
    peer = Peer(server.address)
    peer.send(handshake_bytes("/echo") + frame(0x8, struct.pack("!H", 4001) + b"bye"))
    assert peer.read_head()[0] == 101
    assert peer.read_close() == (4001, "bye")
    assert peer.at_eof()


def test_a_bad_frame_in_the_same_packet_as_the_request_comes_after_the_answers(serve):
    server = serve(ECHO)
    peer = Peer(server.address)
    peer.send(handshake_bytes("/echo") + frame(0x1, b"hi") + frame(0x3, b"reserved opcode"))
    assert peer.read_head()[0] == 101
    assert peer.read_frame()[:2] == (0x1, b"hi")
    assert peer.read_close()[0] == 1002
    assert peer.at_eof()


def test_subprotocol_chosen_from_the_route_list_never_echoed_blindly(serve):
    app = Router().websocket("/sub", echo, subprotocols=["chat.v2", "chat.v1"])
    server = serve(app)
    with connect(url(server, "/sub"), subprotocols=["chat.v1", "bogus"]) as client:
        assert client.subprotocol == "chat.v1"
    peer = Peer(server.address)
    head = peer.upgrade("/sub", "Sec-WebSocket-Protocol: bogus\r\n")
    assert "Sec-WebSocket-Protocol" not in head


# -- close codes --------------------------------------------------------------------


def raising(ws: WebSocketConnection) -> None:
    ws.recv()
    raise RuntimeError("secret detail")


def returning(ws: WebSocketConnection) -> None:
    ws.send_text("bye")


@pytest.mark.expect_errors  # the test makes it raise
def test_handler_return_closes_1000_and_raise_closes_1011_without_details(serve, caplog):
    app = Router().websocket("/raise", raising).websocket("/return", returning)
    server = serve(app)
    with connect(url(server, "/return")) as client:
        assert client.recv() == "bye"
        with pytest.raises(ConnectionClosed):
            client.recv()
        assert client.close_code == 1000
    peer = Peer(server.address)
    peer.upgrade("/raise")
    peer.send(frame(0x1, b"boom"))
    code, reason = peer.read_close()
    assert code == 1011 and "secret" not in reason
    assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8
        (frame(0x3, b"x"), 1002),  # reserved opcode
        (frame(0x1, b"x", rsv1=True), 1002),  # RSV1 without an extension
        (frame(0x1, b"x", mask=False), 1002),  # unmasked client frame
        (frame(0x9, b"x" * 126), 1002),  # control frame too long
        (frame(0x0, b"x"), 1002),  # continuation with nothing to continue
        (frame(0x1, b"", length=2000), 1009),  # over max_message_size, refused at the header
    ],
    ids=["utf8", "opcode", "rsv1", "unmasked", "long-ping", "orphan-continuation", "too-big"],
)
def test_bad_frames_get_the_right_close_code(serve, caplog, data, code):
    server = serve(ECHO, max_message_size=1000)
    peer = Peer(server.address)
    peer.upgrade("/echo")
    peer.send(frame(0x1, b"before") + data)
    assert peer.read_frame()[:2] == (0x1, b"before")  # the valid message is answered first
    assert peer.read_close()[0] == code
    assert peer.at_eof()
    assert any(f"close code {code}" in r.getMessage() for r in caplog.records)
    with connect(url(server, "/echo")) as client:
        client.send("still here")
        assert client.recv() == "still here"


def test_fragments_adding_up_past_the_limit_get_1009(serve):
    server = serve(ECHO, max_message_size=1000)
    peer = Peer(server.address)
    peer.upgrade("/echo")
    peer.send(frame(0x2, b"x" * 400, fin=False))
    peer.send(frame(0x0, b"x" * 400, fin=False))
    peer.send(frame(0x0, b"x" * 400, fin=False))
    assert peer.read_close()[0] == 1009


def test_compression_bomb_gets_1009(serve):
    server = serve(ECHO, max_message_size=64 * 1024)
    peer = Peer(server.address)
    peer.upgrade("/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    bomb = deflate(b"\x00" * (200 * 1024 * 1024))  # 200 MiB of zeros in about 200 kB
    assert len(bomb) < 300_000
    peer.send(frame(0x2, bomb, rsv1=True))
    assert peer.read_close()[0] == 1009


def test_route_overrides_max_message_size(serve):
    app = Router().websocket("/small", echo, max_message_size=10).websocket("/echo", echo)
    server = serve(app)
    with connect(url(server, "/echo")) as client:
        client.send("x" * 100)
        assert client.recv() == "x" * 100
    with connect(url(server, "/small")) as client:
        client.send("x" * 100)
        with pytest.raises(ConnectionClosedError):
            client.recv()
        assert client.protocol.close_rcvd.code == 1009


def test_peer_vanishing_mid_frame_leaves_the_server_serving(serve):
    server = serve(ECHO)
    peer = Peer(server.address)
    peer.upgrade("/echo")
    peer.send(frame(0x1, b"x" * 1000)[:500])
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # reset mid-frame
    with connect(url(server, "/echo")) as client:
        client.send("alive")
        assert client.recv() == "alive"
    wait_for(lambda: not server.connections, "the connection gone")
    assert not server.connections


def test_peer_that_never_answers_close_is_dropped_after_close_timeout(serve):
    server = serve(Router().websocket("/return", returning), close_timeout=0.3)
    peer = Peer(server.address)
    peer.upgrade("/return")
    assert peer.read_frame()[:2] == (0x1, b"bye")
    assert peer.read_close()[0] == 1000
    assert peer.sock.recv(10) == b""  # dropped without our Close reply


# -- pings, pongs, backpressure ---------------------------------------------------------


def test_accepted_sockets_send_small_frames_at_once(serve):
    """TCP_NODELAY: a second small message must not wait for the peer to acknowledge the first."""

    def report(ws: WebSocketConnection) -> None:
        ws.send_text(str(ws._transport._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))

    server = serve(Router().websocket("/nodelay", report))
    with connect(url(server, "/nodelay")) as client:
        assert client.recv(timeout=5) == "1"


def test_pings_are_answered_while_the_handler_is_busy_and_still_delivered(serve):
    seen: list[Message] = []

    def busy(ws: WebSocketConnection) -> None:
        ws.send_text("busy")
        gevent.sleep(1.0)  # the handler is not reading
        for message in ws:
            seen.append(message)
            if not ws.closed:
                ws.send_text(type(message).__name__)

    server = serve(Router().websocket("/busy", busy))
    peer = Peer(server.address)
    peer.upgrade("/busy")
    assert peer.read_frame()[:2] == (0x1, b"busy")
    peer.send(frame(0x9, b"are you there"))
    assert peer.read_frame()[:2] == (0xA, b"are you there")  # before the handler woke up
    assert peer.read_frame()[:2] == (0x1, b"Ping")
    peer.send(frame(0xA, b"unsolicited"))
    assert peer.read_frame()[:2] == (0x1, b"Pong")
    peer.send(frame(0x8, struct.pack("!H", 4000) + b"done"))
    assert peer.read_close() == (4000, "done")  # our Close echoes the peer's code
    assert peer.at_eof()
    wait_for(lambda: seen and seen[-1] == Message.Close(CloseFrame(4000, "done")), "the Close handed to the handler")


def test_a_full_inbox_stops_reading_the_socket(serve):
    seen: list[int] = []
    release = threading.Event()

    def stalled(ws: WebSocketConnection) -> None:
        while not release.is_set():
            gevent.sleep(0.05)
        seen.append(len(ws._inbox))
        count = 0
        while ws.recv_timeout(2) is not None:
            count += 1
        seen.append(count)

    server = serve(Router().websocket("/stall", stalled), max_queue=4)
    peer = Peer(server.address)
    peer.upgrade("/stall")
    message = frame(0x2, b"x" * 1000)
    sent = 0
    peer.sock.settimeout(0.5)
    try:
        while sent < 100_000:  # the kernel buffers fill up, then sendall times out
            peer.sock.sendall(message)
            sent += 1
    except TimeoutError:
        pass
    assert sent < 100_000
    release.set()
    wait_for(lambda: len(seen) >= 2, "the second read", timeout=30)
    assert seen[0] <= 4 + 64  # one read's worth past the limit at most
    assert seen[1] == sent  # reading resumed, and nothing was lost


def test_stop_closes_connections_with_1001():
    server = Server(ECHO, ("127.0.0.1", 0))
    server.start_in_thread()
    with connect(url(server, "/echo")) as client:
        client.send("x")
        assert client.recv() == "x"
        server.stop(timeout=5)
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)
        assert client.protocol.close_rcvd.code == 1001
        assert client.protocol.close_rcvd.reason == "Server shutdown"
    server.stop()  # idempotent


def test_server_is_a_context_manager_and_reports_its_port():
    with Server(ECHO, ("127.0.0.1", 0)) as server:
        host, port = server.address
        assert port != 0
        with connect(f"ws://{host}:{port}/echo") as client:
            client.send("ctx")
            assert client.recv() == "ctx"
