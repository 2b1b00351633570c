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
        confirmed: set[bytes] = set()  # what Redis confirmed (shard_channels holds what was asked)

        def subscribed() -> bool:
            message = pubsub.get_sharded_message(timeout=0.1)
            if message is not None and message["type"] == "smessage":
                heard.append((message["channel"], decode_positioned(message["data"])))
            elif message is not None and message["type"] == "ssubscribe":
                confirmed.add(message["channel"])
            return len(confirmed) == len(rooms)

        wait_for(subscribed, "the shard subscriptions, confirmed")
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


EMITTER_MADE_BEFORE_THE_PATCH = """
import sys
from ignitia_sync.redis import Emitter
emitter = Emitter(sys.argv[1])  # at import, as in gunicorn's master with preload_app
from gevent import monkey
monkey.patch_all()  # then the worker patches
import gevent
greenlets = [gevent.spawn(lambda n=n: [emitter.broadcast(f"{n}-{k}", room="shared") for k in range(20)])
             for n in range(4)]
gevent.joinall(greenlets, raise_error=True)
print("published", sum(len(g.value) for g in greenlets))
"""


def test_an_emitter_made_before_gevent_patches_lets_greenlets_take_turns(redis_server):
    """A real lock made at import would block the hub its holder waits in: the worker would hang."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", EMITTER_MADE_BEFORE_THE_PATCH, redis_server.url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "published 80", done.stdout + done.stderr


# -- a new epoch keeps what each process had applied -----------------------------------------


def position_bumped(client: redis.Redis, uid: bytes, seq: int, epoch: bytes) -> list[Any]:
    """POSITION with "start a new epoch first" (the sender dropped messages of the room)."""
    answer: list[Any] = client.eval(POSITION % "PUBLISH", 2, META, LOG, CHANNEL, b"Pt" + uid, b"hi", epoch,
                                    b"%016x" % seq, 10, 1000, 60_000, 7_200_000, "1")
    return answer


def test_a_new_epoch_notice_keeps_the_sequence_numbers_applied_so_a_resend_is_not_applied_twice(redis_server):
    """A's seq 7 applied, its answer lost (A keeps it to send again); B's new epoch runs first:
    A's resend must be answered as applied, not given a position in the new epoch."""
    client = redis_server.client()
    assert position(client, UID_A, 7, meta_ttl_ms=7_200_000)[1] == 1
    assert client.eval(NEW_EPOCH % "PUBLISH", 2, META, LOG, CHANNEL, b"Ee" + UID_B, b"e2", 3_600_000, "") == 1
    assert client.hget(META, "e") == b"e2" and client.hget(META, "o") == b"0"  # the epoch did start again
    assert client.exists(LOG) == 0 and client.hget(META, "m") == b"7200000"  # its log gone, its meta_ttl kept
    assert position(client, UID_A, 7)[1] < 1  # sent again: already applied
    assert client.hget(META, "o") == b"0"
    assert position(client, UID_A, 8)[1] == 1  # the next one starts the new epoch's offsets


def test_a_publish_that_starts_a_new_epoch_keeps_the_other_processes_sequence_numbers(redis_server):
    client = redis_server.client()
    assert position(client, UID_A, 7)[1] == 1
    assert position(client, UID_A, 8)[1] == 2
    assert position_bumped(client, UID_B, 1, b"e2") == [b"e2", 1, 0]  # B dropped messages: a new epoch
    assert client.xlen(LOG) == 1 and int(client.hget(META, "b")) == 2  # the old epoch's log is gone
    assert position(client, UID_A, 7)[1] < 1 and position(client, UID_A, 8)[1] < 1  # sent again: applied
    assert position(client, UID_A, 9)[1:] == [2, 0]
    assert position_bumped(client, UID_B, 1, b"e3")[1] == -1  # B's own resend is not applied twice either


EMITTER_SHARED_BY_FORKED_WORKERS = """
import os, sys
from ignitia_sync.redis import Emitter
emitter = Emitter(sys.argv[1])  # made in the master, used in the workers it forks
children = []
for worker in range(2):
    pid = os.fork()
    if pid == 0:
        try:
            sent = sum(emitter.broadcast(f"{worker}-{k}", room="shared") >= 0 for k in range(5))
            os._exit(0 if sent == 5 else 3)
        except BaseException:
            os._exit(4)
    children.append(pid)
print(sorted(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children))
"""


def test_workers_forked_from_the_process_that_made_an_emitter_each_number_their_own_messages(redis_server):
    """Under one copied uid, the second worker's numbers were "applied before": nothing published."""
    import subprocess
    import sys

    log = redis_server.client()
    done = subprocess.run([sys.executable, "-c", EMITTER_SHARED_BY_FORKED_WORKERS, redis_server.url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[0, 0]", done.stdout + done.stderr
    assert log.xlen("{ignitia:room:shared}:s") == 10  # every message of both workers is in the room's log
