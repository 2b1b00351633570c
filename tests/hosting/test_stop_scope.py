"""Stopping a server stops the WebSocket routes of the WSGI app it served, and no other host.

A server that serves a Flask app closes that app's WebSockets with 1001 when it stops, and
that app's routes stay stopped in this process (503: stopping a server means its process is
ending); a host it never served (another app of the process) keeps serving.
"""

from __future__ import annotations

import pytest
from flask import Flask
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ignitia_sync import HandshakeError, Message, Router, Server
from ignitia_sync.flask import Sock
from ignitia_sync.testing import TestClient


def flask_app() -> Flask:
    app = Flask(__name__)
    sock = Sock(app)

    @sock.route("/ws")
    def echo(ws) -> None:
        while (data := ws.receive()) is not None:
            ws.send(data)

    return app


def test_stop_closes_the_served_apps_websockets_and_leaves_other_hosts_serving():
    served, bystander = flask_app(), flask_app()
    server = Server(Router(), ("127.0.0.1", 0), wsgi_app=served)
    server.start_in_thread()
    with connect(f"ws://127.0.0.1:{server.address[1]}/ws", open_timeout=10) as client:
        try:
            client.send("hi")
            assert client.recv(timeout=5) == "hi"
        finally:
            server.stop()
        with pytest.raises(ConnectionClosed) as closed:  # not a 1006: the served app's routes were stopped
            client.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    with TestClient(bystander) as test_client:  # a host of another app of the process
        ws = test_client.connect("/ws")
        ws.send_text("still served")
        assert ws.recv(timeout=5) == Message.text("still served")
    with TestClient(served) as test_client, pytest.raises(HandshakeError) as refused:
        test_client.connect("/ws")
    assert (refused.value.status, refused.value.body) == (503, "server shutting down\n")


def test_stop_also_stops_a_wsgi_host_that_only_broadcast_from_a_view():
    """A view's broadcast attaches the app's host to this server's hub (its backplane runs
    here) without any WebSocket served: stop() must shut it down too."""
    import urllib.request

    from ignitia_sync.wsgi import WebSocketMiddleware

    router = Router().websocket("/ws", lambda ws: None)

    def view(environ, start_response):
        middleware.registry.broadcast(Message.text("news"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"sent"]

    middleware = WebSocketMiddleware(view, router)
    server = Server(Router(), ("127.0.0.1", 0), wsgi_app=middleware)
    server.start_in_thread()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.address[1]}/", timeout=10) as response:
            assert response.read() == b"sent"
    finally:
        server.stop()
    assert middleware.shutting_down
