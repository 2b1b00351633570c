"""Flask with WebSocket routes (ignitia_sync.flask.Sock), served for real in a subprocess."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .subprocess_server import free_port, host_command, running


@pytest.fixture(params=["ignitia-sync", "gunicorn"])
def base(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    with running(host_command(request.param, "tests.scripts.flask_app:app", port), port):
        yield f"127.0.0.1:{port}"


def login(base: str, name: str) -> str:
    with urllib.request.urlopen(f"http://{base}/login/{name}", timeout=10) as response:
        assert response.read() == b"logged in"
        return response.headers["Set-Cookie"].split(";")[0]


def test_url_for_and_http_routes_work_beside_websocket_routes(base):
    with urllib.request.urlopen(f"http://{base}/", timeout=10) as response:
        # WebSocket rules build absolute ws:// URLs, ready for the page's JavaScript.
        assert response.read() == f"rooms at ws://{base}/ws/room/lobby, counting at ws://{base}/ws/count/3".encode()


def test_the_handler_runs_in_the_request_context_with_session_and_login(base):
    cookie = login(base, "alice")
    with connect(f"ws://{base}/ws/room/kitchen", additional_headers={"Cookie": cookie}) as alice, \
         connect(f"ws://{base}/ws/room/kitchen") as stranger:
        assert alice.recv(timeout=10) == "hello alice (alice) in kitchen at /ws/room/kitchen"
        assert stranger.recv(timeout=10) == "hello None (anonymous) in kitchen at /ws/room/kitchen"
        alice.send("hi all")
        assert alice.recv(timeout=10) == "alice: hi all"
        assert stranger.recv(timeout=10) == "alice: hi all"  # the room is the registry's


def test_login_required_refuses_before_the_upgrade(base):
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://{base}/ws/private")
    assert info.value.response.status_code == 401
    with connect(f"ws://{base}/ws/private", additional_headers={"Cookie": login(base, "bob")}) as ws:
        assert ws.recv(timeout=10) == "only for bob"


def test_blueprints_converters_and_flask_socks_close(base):
    with connect(f"ws://{base}/ws/count/3") as ws:
        assert [ws.recv(timeout=10) for _ in range(3)] == ["0", "2", "4"]
        with pytest.raises(ClientClosed):
            ws.recv(timeout=10)
        assert ws.protocol.close_rcvd is not None
        assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (1000, "counted")


def test_a_4_mib_message_through_flask_sock_style_receive(base):
    with connect(f"ws://{base}/ws/echo", max_size=None) as ws:
        big = os.urandom(4 << 20)
        ws.send(big)
        assert ws.recv(timeout=30) == big
