"""redis/shards.py: the backplane's redis-py clients and subscription connections, against a real redis-server."""

from __future__ import annotations

import time
from types import SimpleNamespace

import gevent.monkey
import pytest
import redis
from redis.crc import key_slot

from ignitia_sync.redis.shards import (
    _client,
    _GeventConnection,
    _Interrupted,
    _open_shards,
    _options,
    _Sequential,
    _Shard,
)

OWN = b"{ignitia}:proc:0123456789abcdef"


def subscribed_names(shard: _Shard) -> set[bytes]:
    """Read the subscribe/unsubscribe confirmations, then ask the server what the connection hears."""
    deadline = time.monotonic() + 5
    while shard.pubsub.get_message(timeout=0.05) is not None and time.monotonic() < deadline:
        pass
    return set(shard.pubsub.channels)


def test_options_give_gevent_sockets_resp2_and_no_retry_after_a_timeout():
    options = _options("redis://127.0.0.1:6379/0", retries=1, socket_timeout=2.5)
    assert options["connection_class"] is _GeventConnection
    assert (options["protocol"], options["socket_timeout"], options["socket_connect_timeout"]) == (2, 2.5, 5.0)
    retry = options["retry"]
    assert retry._retries == 1
    assert redis.ConnectionError in retry._supported_errors  # a closed connection: sent again
    assert redis.TimeoutError not in retry._supported_errors  # a timeout: Redis may have run it


@pytest.mark.skipif(gevent.monkey.is_module_patched("socket"), reason="this process is monkey-patched")
@pytest.mark.parametrize("url", ["rediss://127.0.0.1:6380/0", "unix:///tmp/redis.sock"])
def test_tls_and_unix_sockets_need_a_monkey_patched_process(url):
    with pytest.raises(ValueError, match="needs a monkey-patched process"):
        _options(url, retries=0, socket_timeout=None)


def test_a_client_talks_over_one_gevent_connection(redis_server):
    client = _client(redis_server.url, retries=0, socket_timeout=5.0)
    try:
        assert client.ping() is True
        assert client.connection_pool.max_connections == 1
        assert isinstance(client.connection_pool.get_connection(), _GeventConnection)
    finally:
        client.close()


def test_sequential_runs_the_commands_in_order_and_says_how_far_it_got():
    calls = []

    def refuse(*args: object) -> None:
        raise redis.ResponseError("OOM command not allowed")

    def cut(*args: object) -> None:
        calls.append(("cut",))
        raise redis.ConnectionError("Connection closed by server.")

    fake = SimpleNamespace(
        publish=lambda channel, data: calls.append(("publish", channel)) or 1,
        eval=lambda script, numkeys, *rest: calls.append(("eval", rest[0])) or [1],
        set=refuse,
        spublish=cut,
    )
    pipe = _Sequential(fake)  # type: ignore[arg-type]
    pipe.publish(b"c", b"x")
    pipe.eval("return 1", 1, b"k")
    pipe.set("k", "v")
    assert calls == []  # queued: nothing runs before execute()
    results = pipe.execute()
    assert calls == [("publish", b"c"), ("eval", b"k")]
    assert results[:2] == [1, [1]] and isinstance(results[2], redis.ResponseError)  # an answer, not a failure
    assert pipe.execute() == []
    pipe.publish(b"before", b"x")
    pipe.spublish(b"cut", b"x")
    pipe.publish(b"never", b"x")
    with pytest.raises(_Interrupted) as interrupted:
        pipe.execute()
    assert interrupted.value.done == [1]  # what ran; the cut one may have; the last one was never sent
    assert isinstance(interrupted.value.error, redis.ConnectionError)
    assert (b"never" not in [call[-1] for call in calls]) and pipe.execute() == []


def test_one_shard_for_a_plain_redis_wakes_on_the_process_channel(redis_server):
    (shard,) = _open_shards(redis_server.url, sharded=False, own=OWN, wake_prefix="ignitia:wake:x:")
    try:
        assert (shard.wake, shard.kind, shard.sharded) == (OWN, "message", False)
        assert shard.owns(b"anything") and shard.subscribed == set()  # nothing subscribed before start()
        shard.start({b"ignitia:all", OWN, b"ignitia:room:a"})
        assert subscribed_names(shard) == {b"ignitia:all", OWN, b"ignitia:room:a"}
        assert redis_server.subscribers("ignitia:room:a") == 1
    finally:
        shard.close()


def test_updates_apply_only_the_last_change_of_each_room(redis_server):
    (shard,) = _open_shards(redis_server.url, sharded=False, own=OWN, wake_prefix="")
    try:
        shard.start({b"ignitia:all", b"ignitia:room:old"})
        shard.pending.update({b"ignitia:room:new": True, b"ignitia:room:old": False, b"ignitia:room:flap": True})
        shard.pending[b"ignitia:room:flap"] = False  # joined and left before the update: nothing to do
        shard.update()
        assert shard.pending == {}
        assert shard.subscribed == {b"ignitia:all", OWN, b"ignitia:room:new"}
        assert subscribed_names(shard) == {b"ignitia:all", OWN, b"ignitia:room:new"}
        assert shard.confirm_unsubscribe(b"ignitia:room:old") is True  # the answer to our own leave
        assert shard.confirm_unsubscribe(b"ignitia:room:new") is False  # the server dropped one we want
        assert shard.confirm_unsubscribe(b"ignitia:room:never") is True
    finally:
        shard.close()


def test_a_cluster_shard_owns_its_slots_and_draws_a_wake_channel_among_them():
    owned = {slot for slot in range(16384) if slot % 3 == 1}
    node, other = SimpleNamespace(name="n1"), SimpleNamespace(name="n2")
    cluster = SimpleNamespace(nodes_manager=SimpleNamespace(
        slots_cache={slot: [node if slot in owned else other] for slot in range(16384)}
    ))
    shard = _Shard(redis.Redis(), None, (cluster, "n1"), "ignitia:wake:u:")  # type: ignore[arg-type]
    assert (shard.sharded, shard.kind) == (True, "smessage")
    assert shard.wake.startswith(b"ignitia:wake:u:") and key_slot(shard.wake) in owned
    channels = [f"ignitia:room:{n}".encode() for n in range(200)]
    assert [shard.owns(channel) for channel in channels] == [key_slot(channel) in owned for channel in channels]
    groups = shard._by_slot(tuple(channels))  # SSUBSCRIBE takes one slot's channels at a time
    assert sorted(channel for group in groups for channel in group) == sorted(channels)
    assert all(len({key_slot(channel) for channel in group}) == 1 for group in groups)
