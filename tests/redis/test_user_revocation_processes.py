"""Revoking a user closes every connection of that user in every process, and nobody else's.

Two real server processes (tests/redis/users_server.py) share one real redis-server; alice
has three connections, two in the first process (two tabs: ``AuthMiddleware``'s ``verify``
names her) and one in the second (``registry.set_user``). bob and carol each have one that
must stay open. The revocation comes from a third process (an ``Emitter``: this test's) or
from a handler in one of the workers; all three of alice's connections must be closed with
its code and reason within one second, one deadline shared by the three receives.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection

from ignitia_sync.redis import Emitter
from tests.redis.revocation_clients import closed_before, opened, still_open
from tests.redis_server import RedisServer
from tests.subprocess_server import free_port, running
from tests.waiting import wait_for

WITHIN = 1.0  # seconds for all of alice's connections, together


@pytest.fixture
def ports(redis_server: RedisServer) -> Iterator[list[int]]:
    """Two server processes on one Redis, both listening on ``ignitia:all``."""
    with contextlib.ExitStack() as stack:
        ports = [free_port() for _ in range(2)]
        for port in ports:
            command = [sys.executable, "-m", "tests.redis.users_server", "--port", str(port)]
            stack.enter_context(running(command, port, {"REDIS_URL": redis_server.url}))
        wait_for(lambda: redis_server.subscribers("ignitia:all") == 2, "both processes to listen on ignitia:all")
        yield ports


def open_as(clients: contextlib.ExitStack, port: int, user: str, *, how: str) -> ClientConnection:
    """A connection of ``user``: ``how="auth"`` through AuthMiddleware, ``"tab"`` through set_user."""
    query = f"token={user}" if how == "auth" else f"user={user}"
    return opened(clients, f"ws://127.0.0.1:{port}/{how}?{query}", f"hello {user}")


def alice_bob_and_carol(clients: contextlib.ExitStack, ports: list[int]) -> tuple[list[ClientConnection], ...]:
    alices = [
        open_as(clients, ports[0], "alice", how="auth"),
        open_as(clients, ports[0], "alice", how="auth"),  # a second tab in the same process
        open_as(clients, ports[1], "alice", how="tab"),
    ]
    others = [open_as(clients, ports[0], "bob", how="auth"), open_as(clients, ports[1], "carol", how="tab")]
    return alices, others


def test_an_emitter_revokes_a_users_three_connections_on_two_workers(ports, redis_server, clients):
    alices, others = alice_bob_and_carol(clients, ports)
    emitter = Emitter(redis_server.url)
    try:
        assert emitter.disconnect("alice", 4001, "banned") == 2  # both processes heard it
    finally:
        emitter.close()
    deadline = time.monotonic() + WITHIN
    assert [closed_before(client, deadline) for client in alices] == [(4001, "banned")] * 3
    for client in others:
        still_open(client)


@pytest.mark.parametrize("where", [0, 1])
def test_a_worker_revokes_a_users_connections_here_and_in_the_other_worker(ports, clients, where):
    alices, others = alice_bob_and_carol(clients, ports)
    admin = others[where]  # bob's (in the first process) or carol's (in the second) asks
    admin.send("revoke alice")
    assert admin.recv(timeout=10) == f"closed {[2, 1][where]}"  # the ones in the admin's process
    deadline = time.monotonic() + WITHIN
    assert [closed_before(client, deadline) for client in alices] == [(4001, "banned")] * 3
    for client in others:
        still_open(client)
