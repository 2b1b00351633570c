"""Redis Sentinel: the backplane finds the primary through ``redis+sentinel://`` and keeps a room's
messages flowing across a failover (a real primary, replica and sentinel; the primary SIGKILLed)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
import redis
from websockets.sync.client import connect

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL
from ignitia_sync.redis import Emitter, RedisBackplane
from tests.conftest import url
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.subprocess_server import free_port
from tests.waiting import wait_for

ROOMS = [SUBPROTOCOL]


class SentinelSet:
    """A primary, a replica of it, and one sentinel watching them (quorum 1, down after 1 s)."""

    def __init__(self, directory) -> None:
        self.primary = RedisServer()
        self.primary.start()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica.start()
        self.port = free_port()
        config = directory / "sentinel.conf"
        config.write_text(  # (its working directory is the config's: it rewrites the file)
            f"port {self.port}\nbind 127.0.0.1\n"
            f"sentinel monitor main 127.0.0.1 {self.primary.port} 1\n"
            "sentinel down-after-milliseconds main 1000\nsentinel failover-timeout main 3000\n"
        )
        self.sentinel = subprocess.Popen([REDIS_SERVER, str(config), "--sentinel"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis+sentinel://127.0.0.1:{self.port}/main"
        wait_for(lambda: self.primary_port() == self.primary.port, "the sentinel to know the primary")
        wait_for(lambda: self.primary.client().info("replication")["connected_slaves"] == 1, "the replica in sync")

    def primary_port(self) -> int | None:
        try:
            address = redis.Redis(port=self.port).execute_command("SENTINEL", "get-master-addr-by-name", "main")
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def stop(self) -> None:
        self.sentinel.kill()
        self.sentinel.wait(10)
        for server in (self.primary, self.replica):
            if server.process is not None and server.process.poll() is None:
                server.kill()


@pytest.fixture
def sentinels(tmp_path) -> Iterator[SentinelSet]:
    made = SentinelSet(tmp_path)
    yield made
    made.stop()


def member(ws: WebSocketConnection) -> None:
    ws.join("feed")
    for _ in ws:
        pass


@pytest.mark.faults
def test_a_room_keeps_flowing_across_a_failover_and_loses_nothing_silently(serve, sentinels):
    server = serve(Router().websocket("/feed", member, subprotocols=ROOMS),
                   backplane=RedisBackplane(sentinels.url, reconnect_initial=0.05, reconnect_max=0.3,
                                            publish_timeout=1.0, health_check_interval=1.0))
    emitter = Emitter(sentinels.url)  # a process without WebSockets finds the primary the same way
    with connect(url(server, "/feed"), subprotocols=ROOMS) as ws:
        ws.send(json.dumps({"type": "hello"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "joined"
        for n in range(1, 21):
            server.registry.broadcast_threadsafe(Message.text(str(n)), room="feed")
        before = [json.loads(ws.recv(timeout=10)) for _ in range(20)]
        assert emitter.broadcast("from the emitter", room="feed") == 1
        before.append(json.loads(ws.recv(timeout=10)))
        assert [frame["text"] for frame in before] == [*map(str, range(1, 21)), "from the emitter"]
        wait_for(lambda: sentinels.primary.client().info("replication")["slave0"]["offset"]
                 == sentinels.primary.client().info("replication")["master_repl_offset"], "the replica caught up")
        sentinels.primary.kill()  # SIGKILL: the sentinel promotes the replica
        for n in range(21, 41):  # said during the failover: kept, then sent to the new primary
            server.registry.broadcast_threadsafe(Message.text(str(n)), room="feed")
        after, gaps = [], []
        while len(after) < 20:
            frame = json.loads(ws.recv(timeout=30))
            (gaps if frame["type"] == "gap" else after).append(frame)
        assert [frame["text"] for frame in after] == [str(n) for n in range(21, 41)]  # in order, once
        assert sentinels.primary_port() == sentinels.replica.port
        positions = [frame["position"] for frame in before[:-1] + after]
        if not gaps:  # the replica had everything: the same epoch, offsets without a hole
            assert [p["offset"] for p in positions] == list(range(1, 21)) + list(range(22, 42))
            assert len({p["epoch"] for p in positions}) == 1
        else:  # it did not: the new epoch was announced before its messages
            assert gaps[0]["recovery"]["reason"] == "epoch changed"
    emitter.close()
    assert server.stats()["backplane"]["dropped"] == 0
