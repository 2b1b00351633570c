"""A logout in one process closes the user's connections in every process: examples/flask_logout.py.

Three ``ignitia-sync`` processes serve the example (a Flask app) with one real redis-server
as their backplane; python-websockets clients sign in through Flask's session cookie. One
connection per id and process (``identify``), so alice's three connections live in three
processes, each taking the id over from the one before; bob and carol share those processes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection

from tests.redis.revocation_clients import closed_before, opened, post, still_open
from tests.redis_server import RedisServer
from tests.subprocess_server import free_port, host_command, running
from tests.waiting import wait_for

TARGET = "examples.flask_logout:app"


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


def notes_of(clients: contextlib.ExitStack, port: int, cookie: str, name: str) -> ClientConnection:
    return opened(clients, f"ws://127.0.0.1:{port}/ws/notes", f"hello {name}", cookie)  # identified by now


def test_logout_closes_alices_connections_in_every_process_and_nobody_elses(ports, redis_server, clients):
    alice, bob, carol = (sign_in(ports[0], name) for name in ("alice", "bob", "carol"))
    alices = [notes_of(clients, port, alice, "alice") for port in ports]  # each takes "alice" over
    others = [notes_of(clients, ports[0], bob, "bob"), notes_of(clients, ports[2], carol, "carol")]
    wait_for(lambda: redis_server.subscribers("ignitia:all") == 3, "every process to listen on ignitia:all")

    status, body, _ = post(ports[1], "/logout", alice)
    assert (status, body) == (200, "signed out (1 connection closed in this process)")
    assert [closed_before(client, time.monotonic() + 10) for client in alices] == [(1008, "signed out")] * 3
    for client in others:
        still_open(client, "noted: still here?")
    assert post(ports[1], "/logout", alice)[0] == 200  # the cookie still names alice: a second logout ...
    for client in others:
        still_open(client, "noted: still here?")  # ... closes nothing more


def test_logout_of_a_user_with_no_connection_closes_nothing(ports, redis_server, clients):
    bob, dave = sign_in(ports[0], "bob"), sign_in(ports[0], "dave")
    bobs = [notes_of(clients, port, bob, "bob") for port in ports[:2]]
    wait_for(lambda: redis_server.subscribers("ignitia:all") == 2, "both processes with a connection to listen")
    assert post(ports[0], "/logout", dave)[:2] == (200, "signed out (0 connection closed in this process)")
    assert post(ports[2], "/logout")[0] == 401  # signed in as nobody
    for client in bobs:
        still_open(client, "noted: still here?")
