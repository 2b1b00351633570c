"""flask.py's flask-sock compatibility: ``receive(timeout)``, ``connected``, ``close(reason, message)``
and ``SOCK_SERVER_OPTIONS``, on a real Flask app.

The app is served by our server (its WSGI fallback hands each request to Flask, whose view
takes the socket over) in this process, or by Werkzeug's ``flask run`` in a subprocess; the
client is ``websockets``' (an independent implementation).
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ignitia_sync import Router
from ignitia_sync.flask import ConnectionClosed, Sock
from tests.subprocess_server import ROOT, free_port, running
from tests.waiting import wait_for

ended: list[Any] = []  # what the handlers saw when their connection ended (filled in the server's thread)


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    sock = Sock(app)

    @sock.route("/ws/patient")
    def patient(ws):
        ws.send(f"first: {ws.receive(timeout=0.2)!r}")  # nothing came within 0.2 s: None
        for _ in range(2):
            data = ws.receive(timeout=5)
            ws.send(f"{type(data).__name__}: {data!r}")

    @sock.route("/ws/close/<how>")
    def close(ws, how):
        if how == "default":
            ws.close()
        elif how == "code":
            ws.close(4001, "custom")
        else:
            ws.close(message="only a message")
        ended.append(("after close", ws.connected))

    @sock.route("/ws/until_closed")
    def until_closed(ws):
        ws.send(f"connected: {ws.connected}")
        try:
            while True:
                ws.receive()
        except ConnectionClosed as exc:
            ended.append((exc.code, exc.reason, ws.connected))

    @sock.route("/ws/echo")
    def echo(ws):
        while ws.connected:
            data = ws.receive(timeout=5)
            if data is not None:
                ws.send(data)

    return app


@pytest.fixture
def base(serve) -> Iterator[str]:
    ended.clear()
    server = serve(Router(), wsgi_app=make_app())
    host, port = server.address
    yield f"ws://{host}:{port}"


def test_receive_with_a_timeout_returns_none_then_str_and_bytes(base):
    with connect(f"{base}/ws/patient") as ws:
        assert ws.recv(timeout=5) == "first: None"
        ws.send("text")
        assert ws.recv(timeout=5) == "str: 'text'"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=5) == "bytes: b'\\x00\\x01'"


@pytest.mark.parametrize(("how", "code", "reason"), [
    ("default", 1000, ""), ("code", 4001, "custom"), ("message", 1000, "only a message"),
])
def test_close_takes_flask_socks_reason_and_message(base, how, code, reason):
    with connect(f"{base}/ws/close/{how}") as ws:
        with pytest.raises(ClientClosed):
            ws.recv(timeout=5)
        assert ws.protocol.close_rcvd is not None
        assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (code, reason)
    wait_for(lambda: ended, "the handler to go on after close()")
    assert ended == [("after close", False)]  # close() did not block and connected is False at once


def test_receive_raises_connection_closed_with_the_peers_code_and_connected_turns_false(base):
    with connect(f"{base}/ws/until_closed") as ws:
        assert ws.recv(timeout=5) == "connected: True"
        ws.close(4002, "gone")
    wait_for(lambda: ended, "the handler to see the close")
    assert ended == [(4002, "gone", False)]


def test_sock_server_options_are_read_as_flask_sock_names_them(serve):
    app = make_app(SOCK_SERVER_OPTIONS={"max_message_size": 16, "subprotocols": ["chat.v1"]})
    server = serve(Router(), wsgi_app=app)
    host, port = server.address
    with connect(f"ws://{host}:{port}/ws/echo", subprotocols=["chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v1"
        ws.send("x" * 16)
        assert ws.recv(timeout=5) == "x" * 16
        ws.send("x" * 17)  # over max_message_size: 1009
        with pytest.raises(ClientClosed):
            ws.recv(timeout=5)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1009


APP_MODULE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from tests.test_flask_sock_compat import make_app
    app = make_app()
""")


@contextlib.contextmanager
def flask_run(tmp_path: Any) -> Iterator[str]:
    (tmp_path / "compat_app.py").write_text(APP_MODULE.format(root=ROOT))
    port = free_port()
    command = [sys.executable, "-m", "flask", "--app", str(tmp_path / "compat_app.py") + ":app", "run",
               "--host", "127.0.0.1", "--port", str(port)]
    with running(command, port):
        yield f"ws://127.0.0.1:{port}"


def test_the_same_calls_under_werkzeug_threads(tmp_path):
    with flask_run(tmp_path) as werkzeug:
        with connect(f"{werkzeug}/ws/patient") as ws:
            assert ws.recv(timeout=5) == "first: None"
            ws.send("text")
            assert ws.recv(timeout=5) == "str: 'text'"
            ws.send(b"\x02")
            assert ws.recv(timeout=5) == "bytes: b'\\x02'"
        with connect(f"{werkzeug}/ws/close/code") as ws:
            with pytest.raises(ClientClosed):
                ws.recv(timeout=5)
            assert ws.protocol.close_rcvd is not None
            assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (4001, "custom")
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{werkzeug}/ws/nowhere")
        assert refused.value.response.status_code == 404  # Flask's own answer for an unknown path
