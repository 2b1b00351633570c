"""WebSockets inside a WSGI app on one port, under the servers our users run (subprocesses)."""

from __future__ import annotations

import contextlib
import os
import shutil
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

from .test_connection_core import ROOT, free_port
from .wire import Peer, frame, handshake_bytes

HOSTS = ["ignitia-sync", "pywsgi", "gunicorn"]


def command(host: str, port: int) -> list[str]:
    if host == "ignitia-sync":  # the one command: plain HTTP through pywsgi, WebSockets through us
        return [sys.executable, "-m", "ignitia_sync", "tests.scripts.wsgi_app:app", "--port", str(port)]
    if host == "pywsgi":
        return [sys.executable, os.path.join(ROOT, "tests", "scripts", "wsgi_app.py"), str(port)]
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
    return [gunicorn, "-k", "ignitia_sync.gunicorn.Worker", "-w", "1", "-b", f"127.0.0.1:{port}",
            "--graceful-timeout", "10", "tests.scripts.wsgi_app:app"]


@pytest.fixture(params=HOSTS)
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, subprocess.Popen[str]]]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(command(request.param, port), cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
    try:
        yield request.param, port, process
    finally:
        if process.poll() is None:
            process.terminate()
        output = process.communicate(timeout=20)[0]
        assert "Traceback" not in output and "[ERROR]" not in output, output


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
        process.send_signal(signal.SIGTERM)
        for client in clients:
            with pytest.raises(ClientClosed):
                client.recv(timeout=15)
            assert client.protocol.close_rcvd is not None, host
            assert client.protocol.close_rcvd.code == 1001
    assert process.wait(20) == 0
