"""Presence across real server processes sharing a real redis-server: one entry per user over every
process, arrivals and departures told once to every process's members, and the entries of a
process killed without cleaning up removed within presence_ttl."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator

from websockets.sync.client import connect

from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL
from ignitia_sync.redis import RedisBackplane
from tests.subprocess_server import free_port, host_command, running
from tests.waiting import wait_for

ROOMS = [SUBPROTOCOL]


@contextlib.contextmanager
def worker(redis_url: str, ttl: float = 1.0) -> Iterator[tuple[object, int]]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "PRESENCE_TTL": str(ttl)}
    with running(host_command("ignitia-sync", "tests.scripts.presence_app:app", port), port, env=env) as process:
        yield process, port


def member(port: int, room: str, user: str):
    ws = connect(f"ws://127.0.0.1:{port}/rooms/{room}/{user}", subprotocols=ROOMS)
    ws.send(json.dumps({"type": "hello"}))
    assert json.loads(ws.recv(timeout=10))["type"] == "joined"
    return ws


def presence_frames(ws, count):
    got = []
    while len(got) < count:
        frame = json.loads(ws.recv(timeout=10))
        if frame["type"] == "presence":
            got.append((frame["user"], frame["joined"]))
    return got


def read_presence(redis_url: str, room: str) -> dict[str, int]:
    reader = RedisBackplane(redis_url)
    return reader.read_presence(room)  # what registry.presence() reads in a server (no server needed)


def test_presence_counts_every_process_and_a_user_arrives_once(redis_server):
    with worker(redis_server.url) as (_, first), worker(redis_server.url) as (_, second):
        watcher = member(first, "lobby", "watcher")
        assert presence_frames(watcher, 1) == [("watcher", True)]
        tabs = [member(first, "lobby", "alice"), member(second, "lobby", "alice")]
        bob = member(second, "lobby", "bob")
        assert presence_frames(watcher, 2) == [("alice", True), ("bob", True)]  # alice once, for two tabs
        wait_for(lambda: read_presence(redis_server.url, "lobby") == {"watcher": 1, "alice": 2, "bob": 1},
                 "every process counted")
        tabs[0].close()
        bob.close()
        assert presence_frames(watcher, 1) == [("bob", False)]  # alice still has a tab
        tabs[1].close()
        assert presence_frames(watcher, 1) == [("alice", False)]
        watcher.close()


def test_a_killed_process_leaves_the_presence_within_the_ttl(redis_server):
    with worker(redis_server.url, ttl=1.0) as (_, survivor):
        watcher = member(survivor, "lobby", "watcher")
        assert presence_frames(watcher, 1) == [("watcher", True)]
        with worker(redis_server.url, ttl=1.0) as (doomed, port):
            member(port, "lobby", "carol")
            assert presence_frames(watcher, 1) == [("carol", True)]
            os.kill(doomed.pid, signal.SIGKILL)  # no chance to clean up
            doomed.wait(10)
            # Its entry expires 1 s after its last write; the survivor's next write (every
            # ttl/3) sweeps it and tells everyone. The watcher's wait is bounded by 10 s.
            assert presence_frames(watcher, 1) == [("carol", False)]
        assert read_presence(redis_server.url, "lobby") == {"watcher": 1}
        watcher.close()
