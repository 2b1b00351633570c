"""redis/positions.py at its edges: names with braces on a Redis Cluster, an Emitter shared by
threads, the per-process sequence numbers a room's meta keeps, a new epoch's meta_ttl.

Real redis-servers throughout (a two-node Redis Cluster of the test's own for the sharded
ones); Redis's own clock is never waited for: a stale process is written as stale.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from ignitia_sync import Message
from ignitia_sync.broadcast.positions import History, Position
from ignitia_sync.redis import Emitter, RedisBackplane
from ignitia_sync.redis.positions import NEW_EPOCH, POSITION, decode_positioned, room_keys
from ignitia_sync.redis.presence import presence_keys

from ..redis_server import RedisServer
from ..subprocess_server import free_port
from ..waiting import wait_for

#: Room names whose channel has braces: a hash tag of its own, or none.
BRACED = ["x{t}y", "{z}", "r1}", "a}{b}c", "{}x{y}", "a{b{c}d", "a{b", "{", "}{}"]


def hash_tag(name: bytes) -> bytes | None:
    """Redis Cluster's rule, written out: between the first '{' and the next '}', if not empty."""
    start = name.find(b"{")
    end = name.find(b"}", start + 1) if start >= 0 else -1
    return name[start + 1:end] if end > start + 1 else None


def effective_tag_slot(name: bytes) -> int:
    """The slot of the hash tag if there is one, else of the whole name."""
    tag = hash_tag(name)
    return key_slot(b"{" + tag + b"}" if tag is not None else name)


@pytest.mark.parametrize("prefix", ["ignitia", "{app}", "a}b", "x{y"])
@pytest.mark.parametrize("room", ["lobby", *BRACED])
def test_sharded_keys_share_the_channel_slot_or_the_name_is_refused(prefix, room):
    channel = f"{prefix}:room:{room}".encode()
    assert key_slot(channel) == effective_tag_slot(channel)  # redis-py agrees with the rule
    try:
        keys = room_keys(channel, sharded=True)
    except ValueError as exc:
        assert b"}" in channel and hash_tag(channel) is None, "refused a name that has keys in its slot"
        assert "\n" not in str(exc) and "hash tag" in str(exc)
        with pytest.raises(ValueError, match="hash tag"):
            presence_keys(channel, sharded=True)
        return
    assert [key_slot(key) for key in keys] == [key_slot(channel)] * 2
    assert keys[0] != keys[1]
    presence = presence_keys(channel, sharded=True)  # the room's presence lives in the same slot
    assert [key_slot(key) for key in presence] == [key_slot(channel)] * 3 and len(set(presence)) == 3


def test_sharded_keys_of_two_rooms_with_one_hash_tag_differ():
    first, second = (room_keys(f"ignitia:room:{room}".encode(), sharded=True) for room in ("x{t}y", "x{t}z"))
    assert key_slot(first[0]) == key_slot(second[0]) and not set(first) & set(second)


def test_unsharded_and_brace_free_keys_stay_as_they_were():
    assert room_keys(b"ignitia:room:lobby", sharded=True) == (b"{ignitia:room:lobby}:m", b"{ignitia:room:lobby}:s")
    assert room_keys(b"ignitia:room:a}b") == (b"{ignitia:room:a}b}:m", b"{ignitia:room:a}b}:s")


# -- a real Redis Cluster -------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[list[RedisServer]]:
    """Two primaries of a Redis Cluster, half the slots each (the bus on a free port of its own)."""
    servers = []
    try:
        for _ in range(2):
            directory = tempfile.mkdtemp(prefix="redis-cluster-")
            server = RedisServer("--cluster-enabled", "yes", "--cluster-config-file",
                                 os.path.join(directory, "nodes.conf"), "--cluster-port", str(free_port()))
            servers.append(server)
            server.start()
        first, second = (server.client() for server in servers)
        first.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 8191)
        second.execute_command("CLUSTER", "ADDSLOTSRANGE", 8192, 16383)
        bus = int(second.config_get("cluster-port")["cluster-port"])
        first.execute_command("CLUSTER", "MEET", "127.0.0.1", servers[1].port, bus)
        wait_for(lambda: all(b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
                             and len(client.execute_command("CLUSTER", "NODES").splitlines()) == 2
                             for client in (first, second)), "the cluster formed", timeout=30)
        yield servers
    finally:
        for server in servers:
            server.kill()


def owner(cluster_client: redis.RedisCluster, name: bytes) -> str:
    return str(cluster_client.nodes_manager.get_node_from_slot(key_slot(name)).name)


def test_an_emitter_broadcasts_to_braced_rooms_of_a_cluster_and_refuses_what_cannot_work(cluster):
    client = redis.RedisCluster.from_url(cluster[0].url)
    emitter = Emitter(cluster[0].url, sharded=True)
    try:
        # names whose channel and former keys live on different nodes (what failed: CROSSSLOT)
        rooms = ["x{t}y", "a{b}c}", "k{s}t}"]
        for room in rooms:
            channel = f"ignitia:room:{room}".encode()
            assert owner(client, channel) != owner(client, b"{" + channel + b"}:m")
        pubsub = client.pubsub()
        for room in rooms:
            pubsub.ssubscribe(f"ignitia:room:{room}")
        heard: list[tuple[bytes, Any]] = []

        def subscribed() -> bool:
            message = pubsub.get_sharded_message(timeout=0.1)
            if message is not None and message["type"] == "smessage":
                heard.append((message["channel"], decode_positioned(message["data"])))
            return sum(1 for channel in pubsub.shard_channels if channel) == len(rooms)

        wait_for(subscribed, "the shard subscriptions")
        for room in rooms:
            assert emitter.broadcast(f"to {room}", room=room) == 1
        wait_for(lambda: subscribed() and len(heard) >= len(rooms), "every room's message")
        assert sorted((channel, found[1].offset, found[3].data) for channel, found in heard) == sorted(
            (f"ignitia:room:{room}".encode(), 1, f"to {room}") for room in rooms)
        for room in ("a}b", "r1}", "}{}"):  # a '}' and no hash tag: no key shares the channel's slot
            with pytest.raises(ValueError, match="hash tag"):
                emitter.broadcast("no", room=room)
        pubsub.close()
    finally:
        emitter.close()
        client.close()


# -- one Emitter, several threads -----------------------------------------------------------


def test_an_emitter_shared_by_threads_publishes_every_room_message_once(redis_server):
    subscriber = redis_server.client().pubsub()
    subscriber.subscribe("ignitia:room:busy")
    wait_for(lambda: subscriber.get_message(timeout=0.1) is not None, "the subscription")
    emitter = Emitter(redis_server.url)
    threads_count, each = 8, 40
    errors: list[BaseException] = []
    start = threading.Event()

    def run(n: int) -> None:
        start.wait()
        try:
            for k in range(each):
                emitter.broadcast(f"{n}-{k}", room="busy")
        except BaseException as exc:  # an unpackable "already applied" answer, for one
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join(60)
    heard: list[tuple[int, str]] = []

    def drain() -> bool:
        while (message := subscriber.get_message(timeout=0.05)) is not None:
            if message["type"] == "message":
                _, position, _, found = decode_positioned(message["data"])
                heard.append((position.offset, found.data))
        return len(heard) >= threads_count * each

    try:
        wait_for(lambda: drain() or bool(errors), "every message", timeout=30)
        assert not errors
        texts = sorted(text for _, text in heard)
        assert texts == sorted(f"{n}-{k}" for n in range(threads_count) for k in range(each))
        assert sorted(offset for offset, _ in heard) == list(range(1, threads_count * each + 1))
    finally:
        subscriber.close()
        emitter.close()


# -- the POSITION and NEW_EPOCH scripts ----------------------------------------------------

UID_A, UID_B = b"a" * 16, b"b" * 16
CHANNEL = b"ignitia:room:r"
META, LOG = room_keys(CHANNEL)


def position(client: redis.Redis, uid: bytes, seq: int, meta_ttl_ms: int = 3_600_000) -> list[Any]:
    answer: list[Any] = client.eval(POSITION % "PUBLISH", 2, META, LOG, CHANNEL, b"Pt" + uid, b"hi", b"e1",
                                    b"%016x" % seq, 10, 1000, 60_000, meta_ttl_ms, "0")
    return answer


def test_sequence_numbers_of_processes_gone_for_an_hour_are_swept_and_live_ones_kept(redis_server):
    client = redis_server.client()
    assert position(client, UID_A, 1)[1] == 1
    # processes that came and went: their last publish here was two hours ago (Redis's clock)
    seconds, _ = client.time()
    stale = (seconds - 7200) * 1000
    for k in range(50):
        client.hset(META, mapping={f"p:{k:016x}": f"{3:016x}", f"l:{k:016x}": stale})
    client.hset(META, "p:" + "c" * 16, f"{9:016x}")  # an older release's: no time, left to the meta's expiry
    client.hset(META, "w", 0)  # the sweep is due
    assert position(client, UID_B, 1)[1] == 2
    fields = {name.decode() for name in client.hkeys(META)}
    assert not {name for name in fields if name[2:] in {f"{k:016x}" for k in range(50)}}
    assert {"p:" + "a" * 16, "l:" + "a" * 16, "p:" + "b" * 16, "p:" + "c" * 16} <= fields
    # the live processes' numbers still say what was applied: sent again, not applied twice
    assert position(client, UID_A, 1)[1] == -1 and position(client, UID_B, 1)[1] == -1
    assert position(client, UID_A, 2)[1] == 3
    # and the next sweep waits an hour (at least): one HGETALL per room and hour, not per publish
    seconds, _ = client.time()
    assert int(client.hget(META, "w")) >= seconds * 1000 + 3_500_000


def test_a_new_epoch_keeps_the_rooms_own_meta_ttl(redis_server):
    client = redis_server.client()
    two_hours = 7_200_000
    position(client, UID_A, 1, meta_ttl_ms=two_hours)
    assert client.pttl(META) > 3_600_000
    # what the backplane passes (it knows no room's History there): the default, an hour
    assert client.eval(NEW_EPOCH % "PUBLISH", 2, META, LOG, CHANNEL, b"Ee" + UID_A, b"e2", 3_600_000, "e1") == 1
    assert client.hget(META, "e") == b"e2"
    assert client.pttl(META) > 3_600_000
    # and once more, from that epoch
    assert client.eval(NEW_EPOCH % "PUBLISH", 2, META, LOG, CHANNEL, b"Ee" + UID_A, b"e3", 3_600_000, "") == 1
    assert client.pttl(META) > 3_600_000


def test_a_sharded_backplane_positions_braced_rooms_and_refuses_what_cannot_work(cluster):
    backplane = RedisBackplane(cluster[0].url, sharded=True, reconnect_initial=0.05, reconnect_max=0.2)
    backplane.attach(lambda message, room: None, lambda id, message: None)
    heard: list[tuple[str, Position, Any]] = []
    backplane.attach_positions(lambda room, position, message, token: heard.append((room, position, message)),
                               lambda room: None)
    rooms = ["x{t}y", "a{b}c}", "k{s}t}"]
    try:
        for room in rooms:
            backplane.joined(room)
        for room in rooms:
            wait_for(lambda room=room: backplane.listen_now(room, 0.5), f"the subscription to {room}")
            assert backplane.publish_positioned(Message.text(f"to {room}"), room, History())
        wait_for(lambda: len({room for room, _, _ in heard}) == len(rooms), "every room's message, positioned")
        # each twice at most: Redis's answer to the publish, and the subscription's (the registry keeps one)
        assert sorted({(room, position.offset, message.data) for room, position, message in heard}) == sorted(
            (room, 1, f"to {room}") for room in rooms)
        for room, position, _ in heard:
            current, found = backplane.read_log(room, None, History(), 10)
            assert current == position and [message.data for _, message in found] == [f"to {room}"]
        with pytest.raises(ValueError, match="hash tag"):
            backplane.publish_positioned(Message.text("no"), "a}b", History())
        with pytest.raises(ValueError, match="hash tag"):
            backplane.read_log("a}b", None, History(), 10)
        assert backplane.stats()["dropped"] == 0
    finally:
        backplane.close(timeout=1)
