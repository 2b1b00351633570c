"""A logout in one process closes the user's connections in every process: examples/flask_logout.py.

Three ``ignitia-sync`` processes serve the example (a Flask app) with one real redis-server
as their backplane; python-websockets clients sign in through Flask's session cookie. One
connection per id and process (``identify``), so alice's three connections live in three
processes, each taking the id over from the one before; bob and carol share those processes.
"""

from __future__ import annotations

import contextlib
import http.client
import urllib.parse
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.redis_server import RedisServer
from tests.subprocess_server import free_port, host_command, running
from tests.waiting import wait_for

TARGET = "examples.flask_logout:app"


def post(port: int, path: str, cookie: str = "", **form: str) -> tuple[int, str, str]:
    """(status, body, session cookie) of a form POST."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **({"Cookie": cookie} if cookie else {})}
        connection.request("POST", path, urllib.parse.urlencode(form), headers)
        response = connection.getresponse()
        set_cookie = response.getheader("Set-Cookie") or ""
        return response.status, response.read().decode(), set_cookie.split(";", 1)[0]
    finally:
        connection.close()


def sign_in(port: int, name: str) -> str:
    status, _, cookie = post(port, "/login", name=name)
    assert status == 200 and cookie.startswith("session=")
    return cookie


@pytest.fixture
def ports(redis_server: RedisServer) -> Iterator[list[int]]:
    """Three processes serving the example on one Redis."""
    env = {"SECRET_KEY": "tests only", "REDIS_URL": redis_server.url}
    with contextlib.ExitStack() as stack:
        ports = [free_port() for _ in range(3)]
        for port in ports:
            stack.enter_context(running(host_command("ignitia-sync", TARGET, port), port, env))
        yield ports


@pytest.fixture
def notes() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def open_notes(stack: contextlib.ExitStack, port: int, cookie: str, name: str) -> ClientConnection:
    client = stack.enter_context(
        connect(f"ws://127.0.0.1:{port}/ws/notes", additional_headers={"Cookie": cookie}, open_timeout=10)
    )
    assert client.recv(timeout=10) == f"hello {name}"  # identified by now
    return client


def closed_with(client: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def still_open(client: ClientConnection) -> None:
    client.send("still here?")
    assert client.recv(timeout=10) == "noted: still here?"


def test_logout_closes_alices_connections_in_every_process_and_nobody_elses(ports, redis_server, notes):
    alice, bob, carol = (sign_in(ports[0], name) for name in ("alice", "bob", "carol"))
    alices = [open_notes(notes, port, alice, "alice") for port in ports]  # each takes "alice" over
    others = [open_notes(notes, ports[0], bob, "bob"), open_notes(notes, ports[2], carol, "carol")]
    wait_for(lambda: redis_server.subscribers("ignitia:all") == 3, "every process to listen on ignitia:all")

    status, body, _ = post(ports[1], "/logout", alice)
    assert (status, body) == (200, "signed out (1 connection closed in this process)")
    assert [closed_with(client) for client in alices] == [(1008, "signed out")] * 3
    for client in others:
        still_open(client)
    assert post(ports[1], "/logout", alice)[0] == 200  # the cookie still names alice: a second logout ...
    for client in others:
        still_open(client)  # ... closes nothing more


def test_logout_of_a_user_with_no_connection_closes_nothing(ports, redis_server, notes):
    bob, dave = sign_in(ports[0], "bob"), sign_in(ports[0], "dave")
    clients = [open_notes(notes, port, bob, "bob") for port in ports[:2]]
    wait_for(lambda: redis_server.subscribers("ignitia:all") == 2, "both processes with a connection to listen")
    assert post(ports[0], "/logout", dave)[:2] == (200, "signed out (0 connection closed in this process)")
    assert post(ports[2], "/logout")[0] == 401  # signed in as nobody
    for client in clients:
        still_open(client)
