"""Attacks on the edges of a real server (issue 11): handshake floods, running out of fds."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import zlib

import gevent
import pytest
from websockets.sync.client import connect

from ignitia_sync import Router
from tests.apps import echo
from tests.conftest import url
from tests.subprocess_server import ROOT, free_port
from tests.waiting import wait_for
from tests.wire import Peer, frame, handshake_bytes


def test_max_connections_per_ip_counts_handshakes_still_in_their_middleware(serve):
    gate = threading.Event()

    def slow_token_check(request):
        while not gate.is_set():
            gevent.sleep(0.01)

    app = Router().middleware(slow_token_check).websocket("/echo", echo)
    server = serve(app, max_connections_per_ip=2)
    peers = [Peer(server.address) for _ in range(4)]
    for peer in peers:
        peer.send(handshake_bytes("/echo"))
    # Two wait in the middleware; the other two were refused before it, while those two still wait.
    wait_for(lambda: server.stats()["refused"].get(503) == 2, "two refused")
    gate.set()
    statuses = sorted(peer.read_head()[0] for peer in peers)
    assert statuses == [101, 101, 503, 503]


def test_running_out_of_file_descriptors_is_logged_and_survived():
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "scripts", "fd_limit_server.py"), str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_for(lambda: any("serving" in line for line in lines), "the server to start")
        held = []
        for _ in range(60):  # more than the 48 descriptors the server may have
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            held.append(sock)
        wait_for(lambda: any("cannot accept: Too many open files" in line for line in lines), "EMFILE at accept")
        for sock in held:
            sock.close()
        with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10) as client:  # accepting resumes by itself
            client.send("still serving")
            assert client.recv(timeout=5) == "still serving"
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(20)
        reader.join(10)
    output = "".join(lines)
    assert "Traceback" not in output
    assert process.returncode == 0


@pytest.fixture(autouse=True)
def _info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ignitia_sync")


def compressed_frame(payload: bytes, bits: int) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
    body = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    return frame(0x1, body, rsv1=True)


def test_a_compressed_connection_costs_at_most_64_kib_after_a_message_each_way(serve):
    """S8: wsproto's zlib defaults (15 / 8) cost about 300 KiB per compressed connection."""
    import tracemalloc

    server = serve(Router().websocket("/echo", echo))
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    tracemalloc.start()
    try:
        peers = []
        before = tracemalloc.take_snapshot()
        for _ in range(20):
            peer = Peer(server.address)
            peer.send(handshake_bytes("/echo", offer))
            status, head = peer.read_head()
            assert status == 101 and "client_max_window_bits=12" in head
            peer.send(compressed_frame(b"hello " * 200, 12))
            _opcode, payload, first = peer.read_frame()
            assert first & 0x40 and zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == b"hello " * 200
            peers.append(peer)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = [tracemalloc.Filter(True, "*ignitia_sync*"), tracemalloc.Filter(True, "*wsproto*")]
    grown = sum(stat.size_diff for stat in after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename"))
    assert grown / 20 <= 64 * 1024, f"{grown / 20 / 1024:.0f} KiB per compressed connection"
    for peer in peers:
        peer.close()


def test_deflate_window_and_memlevel_are_settings():
    from ignitia_sync import ConnectionSettings

    with pytest.raises(ValueError):
        ConnectionSettings(deflate_server_window_bits=8)
    with pytest.raises(ValueError):
        ConnectionSettings(deflate_mem_level=0)
    assert ConnectionSettings(deflate_client_window_bits=15).deflate_client_window_bits == 15


@pytest.mark.parametrize("fragment", [b"", b"x"])
def test_endless_tiny_continuation_frames_hit_the_size_limit(serve, fragment):
    """S9: empty fragments added nothing to the size guard: a message that never ends."""
    server = serve(Router().websocket("/echo", echo), max_message_size=65536)
    peer = Peer(server.address)
    peer.upgrade("/echo")
    flood = frame(0x0, fragment, fin=False) * 1000
    peer.send(frame(0x1, b"start", fin=False))
    peer.sock.settimeout(10)
    try:
        for _ in range(200):  # 200,000 fragments: the limit allows about 2,000
            peer.send(flood)
    except OSError:  # the server has failed the connection and closed its socket
        pass
    code = peer.read_close()[0]
    assert code == 1009
    with connect(url(server, "/echo")) as other:  # the others were served meanwhile
        other.send("ok")
        assert other.recv(timeout=5) == "ok"


def test_tokens_never_reach_a_log_line(serve, caplog):
    """S4: the query string, where browsers put their token, is not logged; nor headers."""
    from ignitia_sync import AuthMiddleware

    app = Router().middleware(AuthMiddleware("right-token")).websocket("/secure", echo)
    server = serve(app)
    peer = Peer(server.address)
    peer.send(handshake_bytes("/secure?token=wrong-token-123", "Authorization: Bearer bearer-secret-456\r\n"))
    assert peer.read_head()[0] == 401
    with connect(url(server, "/secure?token=right-token")) as client:
        client.send("x")
        client.recv(timeout=5)
    wait_for(lambda: any(r.name == "ignitia_sync.access" for r in caplog.records), "the access line")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused GET /secure" in text and '"GET /secure" 101' in text
    for secret in ("wrong-token-123", "bearer-secret-456", "right-token"):
        assert secret not in text


def test_broadcasts_to_stateless_deflate_peers_are_compressed_once_and_read_correctly(serve, monkeypatch):
    """S8: with deflate_no_context_takeover, one compression serves every such peer."""
    from ignitia_sync import Message
    from ignitia_sync.connection import transport

    compressions = []
    real = transport.encode_shared_frame

    def counted(message, key):  # a spy: the real compression runs, its calls are counted
        compressions.append(key)
        return real(message, key)

    monkeypatch.setattr(transport, "encode_shared_frame", counted)

    def member(ws):
        ws.join("room")
        ws.send_text("joined")
        for message in ws:
            if isinstance(message, Message.Text):
                for n in range(5):
                    ws.registry.broadcast(Message.text(f"{message.data} {n} " * 20), room="room")

    server = serve(Router().websocket("/m", member), deflate_no_context_takeover=True)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(url(server, "/m"))) for _ in range(3)]
        plain = stack.enter_context(connect(url(server, "/m"), compression=None))
        for client in (*clients, plain):
            assert client.recv(timeout=5) == "joined"
        assert "server_no_context_takeover" in clients[0].response.headers["Sec-WebSocket-Extensions"]
        clients[0].send("hello")
        for client in (*clients, plain):  # websockets inflates and checks every frame
            assert [client.recv(timeout=5) for _ in range(5)] == [f"hello {n} " * 20 for n in range(5)]
    assert len(compressions) == 5  # once per broadcast for the three deflate peers, not once per peer
