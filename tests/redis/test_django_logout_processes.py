"""Django's logout closes the user's connections in every process: examples/django_logout.py.

Two ``ignitia-sync`` processes serve the example (its Django WSGI application) on one sqlite
file and one real redis-server; python-websockets clients sign in through Django's session
cookie. alice has three connections (two in the first process, one in the second), bob two;
``POST /logout/`` with alice's cookie in the second process closes alice's three with 1008
"logged out" (``user_logged_out`` → ``registry.disconnect``), and none of bob's.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.redis_server import RedisServer
from tests.subprocess_server import ROOT, free_port, host_command, running
from tests.waiting import wait_for

TARGET = "examples.django_logout:application"
WITHIN = 1.0  # seconds for all of alice's connections, together


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
    status, body, cookie = post(port, "/login/", name=name)
    assert (status, body) == (200, "signed in") and cookie.startswith("sessionid=")
    return cookie


@pytest.fixture
def ports(redis_server: RedisServer, tmp_path) -> Iterator[list[int]]:
    """The database migrated once, then two processes serving the example on it and one Redis."""
    env = {"SECRET_KEY": "tests only", "REDIS_URL": redis_server.url, "DJANGO_DB": str(tmp_path / "notes.sqlite3")}
    migrated = subprocess.run(
        [sys.executable, "examples/django_logout.py", "migrate"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, **env, "PYTHONPATH": ROOT}, timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    with contextlib.ExitStack() as stack:
        ports = [free_port() for _ in range(2)]
        for port in ports:
            stack.enter_context(running(host_command("ignitia-sync", TARGET, port), port, env))
        yield ports


@pytest.fixture
def notes() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def open_notes(stack: contextlib.ExitStack, port: int, cookie: str, name: str) -> ClientConnection:
    client = stack.enter_context(
        connect(f"ws://127.0.0.1:{port}/ws/notes/", additional_headers={"Cookie": cookie}, open_timeout=10)
    )
    assert client.recv(timeout=10) == f"hello {name}"  # its user is set by now
    return client


def closed_before(client: ClientConnection, deadline: float) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=max(0.0, deadline - time.monotonic()))
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def still_open(client: ClientConnection) -> None:
    client.send("still here?")
    assert client.recv(timeout=10) == "noted: still here?"


def test_logout_closes_the_users_connections_in_both_processes_and_nobody_elses(ports, redis_server, notes):
    alice, bob = sign_in(ports[0], "alice"), sign_in(ports[1], "bob")
    alices = [open_notes(notes, port, alice, "alice") for port in (ports[0], ports[0], ports[1])]
    bobs = [open_notes(notes, port, bob, "bob") for port in ports]
    wait_for(lambda: redis_server.subscribers("ignitia:all") == 2, "both processes to listen on ignitia:all")

    assert post(ports[1], "/logout/", alice)[:2] == (200, "signed out")
    deadline = time.monotonic() + WITHIN
    assert [closed_before(client, deadline) for client in alices] == [(1008, "logged out")] * 3
    for client in bobs:
        still_open(client)
    # The session is gone: login_required redirects (the client follows, to a page this example has not).
    with pytest.raises(InvalidStatus):
        connect(f"ws://127.0.0.1:{ports[0]}/ws/notes/", additional_headers={"Cookie": alice}, open_timeout=10)
