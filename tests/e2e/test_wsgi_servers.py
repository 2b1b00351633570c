"""WebSockets inside a WSGI app on one port, under the servers our users run (subprocesses)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.subprocess_server import ROOT, free_port, host_command, running
from tests.wire import Peer, frame, handshake_bytes

HOSTS = ["ignitia-sync", "pywsgi", "gunicorn", "werkzeug"]
#: How each host is stopped: a signal from the process manager; Werkzeug's dev server by Ctrl-C.
STOP_SIGNAL = {"werkzeug": signal.SIGINT}


def command(host: str, port: int) -> list[str]:
    script = os.path.join(ROOT, "tests", "scripts", "wsgi_app.py")
    if host == "pywsgi":
        return [sys.executable, script, str(port)]
    if host == "werkzeug":
        return [sys.executable, script, str(port), "werkzeug"]
    return host_command(host, "tests.scripts.wsgi_app:app", port)


@pytest.fixture(params=HOSTS)
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, subprocess.Popen[str]]]:
    port = free_port()
    with running(command(request.param, port), port) as process:
        yield request.param, port, process


def test_http_and_websocket_share_one_port(served):
    _, port, _ = served
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=10) as response:
        assert response.read() == b"page /hello"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ws/echo", timeout=10) as response:
        assert response.read() == b"page /ws/echo"  # not an upgrade: the app answers
    with connect(f"ws://127.0.0.1:{port}/ws/echo", open_timeout=10, max_size=None) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        big = os.urandom(4 << 20)  # flask-sock lost bytes on large writes
        ws.send(big)
        assert ws.recv(timeout=30) == big


def test_bytes_sent_right_after_the_head_are_not_lost(served):
    _, port, _ = served
    peer = Peer(("127.0.0.1", port))
    peer.send(handshake_bytes("/ws/echo") + frame(0x1, b"pipelined") + frame(0x1, b"too"))
    assert peer.read_head()[0] == 101
    assert peer.read_frame()[:2] == (1, b"pipelined")
    assert peer.read_frame()[:2] == (1, b"too")
    peer.close()


def test_a_peer_that_stops_reading_is_closed_by_send_timeout(served):
    host, port, _ = served
    peer = Peer(("127.0.0.1", port), timeout=15)
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    peer.send(handshake_bytes("/ws/flood"))
    assert peer.read_head()[0] == 101
    time.sleep(3)  # reads nothing: the server's send() must give up after send_timeout (1 s)
    while True:  # then read what was queued: it ends with the Close
        opcode, payload, _ = peer.read_frame()
        if opcode == 0x8:
            break
    assert int.from_bytes(payload[:2], "big") == 1008, host  # "slow consumer", not stuck in send()
    peer.close()


def test_a_refusal_before_the_upgrade_keeps_its_status(served):
    _, port, _ = served
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{port}/ws/secure", open_timeout=10)
    assert info.value.response.status_code == 401
    with connect(f"ws://127.0.0.1:{port}/ws/secure?token=secret", open_timeout=10) as ws:
        ws.send("in")
        assert ws.recv(timeout=10) == "in"


def test_sigterm_closes_every_websocket_with_1001(served):
    host, port, process = served
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/ws/hold", open_timeout=10)) for _ in range(3)]
        for client in clients:
            assert client.recv(timeout=10) == "ready"
        process.send_signal(STOP_SIGNAL.get(host, signal.SIGTERM))
        for client in clients:
            with pytest.raises(ClientClosed):
                client.recv(timeout=15)
            assert client.protocol.close_rcvd is not None, host
            assert client.protocol.close_rcvd.code == 1001
    assert process.wait(20) == 0


def test_a_server_that_keeps_its_sockets_answers_500_and_says_what_to_run():
    port = free_port()
    output: list[str] = []
    script = os.path.join(ROOT, "tests", "scripts", "wsgi_app.py")
    with running([sys.executable, script, str(port), "wsgiref"], port, output=output, allow_500=True):
        for _ in range(2):  # each upgrade gets its answer at once: no hang, no half-open socket
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(handshake_bytes("/ws/echo"))
                answer = b"".join(iter(lambda: client.recv(65536), b""))  # HTTP/1.0: it closes
            assert answer.startswith(b"HTTP/1.0 500 ")
            assert answer.endswith(b"\r\n\r\nthis server cannot upgrade to WebSocket\n")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=10) as response:
            assert response.read() == b"page /hello"  # plain HTTP goes on
    assert output[0].count("serve the app with `ignitia-sync MODULE:app`") == 2


def test_a_stop_sends_each_connections_queued_messages_before_its_1001(served):
    host, port, process = served
    with connect(f"ws://127.0.0.1:{port}/ws/queued", open_timeout=10, max_queue=4) as client:
        assert client.recv(timeout=10).startswith("0000")  # the handler has queued everything
        time.sleep(0.5)  # the client reads no more meanwhile: most of the 800 KiB waits in our queue
        process.send_signal(STOP_SIGNAL.get(host, signal.SIGTERM))
        received = [client.recv(timeout=15)[:4] for _ in range(799)]
        assert received == [f"{i:04d}" for i in range(1, 800)]  # all of them, in order
        with pytest.raises(ClientClosed):
            client.recv(timeout=15)
        assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 1001
    assert process.wait(20) == 0


def test_gunicorn_reload_closes_the_old_workers_websockets_with_1001():
    port = free_port()
    with running(host_command("gunicorn", "tests.scripts.wsgi_app:app", port), port) as process:
        with connect(f"ws://127.0.0.1:{port}/ws/hold", open_timeout=10) as old:
            assert old.recv(timeout=10) == "ready"
            process.send_signal(signal.SIGHUP)  # gunicorn's reload: new workers, the old ones stop
            with pytest.raises(ClientClosed):
                old.recv(timeout=20)
            assert old.protocol.close_rcvd is not None and old.protocol.close_rcvd.code == 1001
        deadline = time.monotonic() + 20
        while True:  # until the old worker stops listening, it answers upgrades with 503
            try:
                with connect(f"ws://127.0.0.1:{port}/ws/echo", open_timeout=10) as new:  # a new worker
                    new.send("after the reload")
                    assert new.recv(timeout=10) == "after the reload"
                break
            except InvalidStatus as refused:
                assert refused.response.status_code == 503
                assert refused.response.headers["Retry-After"] == "1"
                assert time.monotonic() < deadline, "no new worker took the connection"
                time.sleep(0.2)
