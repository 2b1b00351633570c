"""Django's logout closes the user's connections in every process: examples/django_logout.py.

Two ``ignitia-sync`` processes serve the example (its Django WSGI application) on one sqlite
file and one real redis-server; python-websockets clients sign in through Django's session
cookie. alice has three connections (two in the first process, one in the second), bob two;
``POST /logout/`` with alice's cookie in the second process closes alice's three with 1008
"logged out" (``user_logged_out`` → ``registry.disconnect``), and none of bob's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.redis.revocation_clients import closed_before, opened, post, still_open
from tests.redis_server import RedisServer
from tests.subprocess_server import ROOT, free_port, host_command, running
from tests.waiting import wait_for

TARGET = "examples.django_logout:application"
WITHIN = 1.0  # seconds for all of alice's connections, together


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


def test_logout_closes_the_users_connections_in_both_processes_and_nobody_elses(ports, redis_server, clients):
    alice, bob = sign_in(ports[0], "alice"), sign_in(ports[1], "bob")
    alices = [opened(clients, f"ws://127.0.0.1:{port}/ws/notes/", "hello alice", alice) for port in (ports[0], ports[0], ports[1])]
    bobs = [opened(clients, f"ws://127.0.0.1:{port}/ws/notes/", "hello bob", bob) for port in ports]
    wait_for(lambda: redis_server.subscribers("ignitia:all") == 2, "both processes to listen on ignitia:all")

    assert post(ports[1], "/logout/", alice)[:2] == (200, "signed out")
    deadline = time.monotonic() + WITHIN
    assert [closed_before(client, deadline) for client in alices] == [(1008, "logged out")] * 3
    for client in bobs:
        still_open(client, "noted: still here?")
    # The session is gone: login_required redirects (the client follows, to a page this example has not).
    with pytest.raises(InvalidStatus):
        connect(f"ws://127.0.0.1:{ports[0]}/ws/notes/", additional_headers={"Cookie": alice}, open_timeout=10)
