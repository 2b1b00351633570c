"""ConnectionsEndpoint as the standalone server's WSGI app: JSON for a loopback peer with the token only.

Our server in a thread, plain HTTP requests with http.client, WebSocket clients with
python-websockets. A non-loopback peer is shown by an ``allow`` list that leaves 127.0.0.1
out (the tests have no other address), and the default list by calling the WSGI app with
a peer address.
"""

from __future__ import annotations

import http.client
import json

import pytest
from websockets.sync.client import connect

from ignitia_sync import Router
from ignitia_sync.hosting.inspection_endpoint import ConnectionsEndpoint
from tests.conftest import url

TOKEN = "a-token-for-tests-only"


def hold(ws, room):
    ws.join(room)
    ws.send_text("joined")
    for _ in ws:
        pass


def get(server, path: str, token: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], object]:
    host, port = server.address
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, path, headers={"Authorization": f"Bearer {token}"} if token is not None else {})
        response = connection.getresponse()
        body = response.read()
        return response.status, dict(response.getheaders()), json.loads(body) if body else None
    finally:
        connection.close()


@pytest.fixture
def server(serve):
    holder = {}
    endpoint = ConnectionsEndpoint(lambda: holder["server"].inspect_connections(), token=TOKEN)
    holder["server"] = serve(Router().websocket("/rooms/:room", hold), wsgi_app=endpoint)
    return holder["server"]


def test_lists_the_connections_as_json_with_the_token(server):
    with connect(url(server, "/rooms/lobby"), open_timeout=10) as lobby, \
            connect(url(server, "/rooms/games"), open_timeout=10) as games:
        assert lobby.recv(timeout=10) == games.recv(timeout=10) == "joined"
        status, headers, body = get(server, "/connections", TOKEN)
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert headers["Cache-Control"] == "no-store"
        listed = body["connections"]
        assert sorted(record["rooms"][0] for record in listed) == ["games", "lobby"]
        assert {record["route"] for record in listed} == {"/rooms/:room"}
        assert {record["peer"] for record in listed} == {"127.0.0.1"}
        assert listed[0].keys() == {"id", "route", "peer", "age", "rooms", "user_id", "state", "outbox_bytes",
                                    "messages_in", "messages_out", "application_id"}


@pytest.mark.parametrize("token", [None, "", "a-token-for-tests-onlx", TOKEN + "x", "Basic " + TOKEN])
def test_401_without_the_right_token(server, token):
    status, headers, body = get(server, "/connections", token)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert body == {"error": "a valid bearer token is required"}


def test_403_from_an_address_not_allowed_even_with_the_token(serve):
    endpoint = ConnectionsEndpoint(lambda: [], token=TOKEN, allow=("10.0.0.0/8",))
    server = serve(Router(), wsgi_app=endpoint)
    assert get(server, "/connections", TOKEN)[0] == 403


@pytest.mark.parametrize("peer", ["203.0.113.7", "10.1.2.3", "2001:db8::1", "", "not an address"])
def test_by_default_only_loopback_may_ask(peer):
    statuses = []
    endpoint = ConnectionsEndpoint(lambda: [], token=TOKEN)
    environ = {"PATH_INFO": "/connections", "REQUEST_METHOD": "GET", "REMOTE_ADDR": peer,
               "HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    endpoint(environ, lambda status, headers: statuses.append(status))
    endpoint({**environ, "REMOTE_ADDR": "::1"}, lambda status, headers: statuses.append(status))
    assert statuses == ["403 Forbidden", "200 OK"]


def test_other_paths_and_methods(server):
    assert get(server, "/elsewhere", TOKEN)[0] == 404
    assert get(server, "/connections", TOKEN, method="POST")[0] == 405


@pytest.mark.parametrize(("options", "error"), [
    ({"token": "short"}, ValueError), ({"token": TOKEN, "path": "connections"}, ValueError),
    ({"token": TOKEN, "allow": "127.0.0.1"}, TypeError), ({"token": TOKEN, "allow": ("nowhere",)}, ValueError),
])
def test_refuses_a_weak_or_wrong_configuration(options, error):
    with pytest.raises(error):
        ConnectionsEndpoint(lambda: [], **options)
