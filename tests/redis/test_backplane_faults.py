"""redis/backplane.py under faults: a stalled Redis (SIGSTOP) and connections cut by a TCP proxy.

The backplanes run in the test's own hub (no monkey-patching), against a real redis-server;
waits go through ``gevent.sleep`` so that their greenlets run. A stall is SIGSTOP of the
redis-server process (the kernel still accepts and buffers, nothing answers); a cut is
``tests/redis/tcp_proxy.py`` closing a connection between us and Redis.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
import redis

from ignitia_sync import Message
from ignitia_sync.redis import Emitter, RedisBackplane, encode
from ignitia_sync.redis.envelope import _BROADCAST

from ..redis_server import RedisServer
from ..waiting import wait_for
from .subscriber import Subscriber
from .tcp_proxy import CuttingProxy


class Recorded:
    """A backplane and what it handed to the registry's callbacks."""

    def __init__(self, backplane: RedisBackplane) -> None:
        self.backplane = backplane
        self.broadcasts: list[tuple[Message, str | None]] = []
        self.direct: list[tuple[str, Message]] = []


@pytest.fixture
def make(redis_server) -> Iterator[Callable[..., Recorded]]:
    """``make(url=..., **options)``: a backplane attached in this hub, its deliveries recorded; closed after."""
    made: list[RedisBackplane] = []

    def create(url: str | None = None, **options: Any) -> Recorded:
        options = {"reconnect_initial": 0.05, "reconnect_max": 0.2, **options}
        backplane = RedisBackplane(url or redis_server.url, **options)
        recorded = Recorded(backplane)
        backplane.attach(lambda message, room: recorded.broadcasts.append((message, room)),
                         lambda id, message: recorded.direct.append((id, message)))
        made.append(backplane)
        return recorded

    yield create
    for backplane in made:
        backplane.close()


class Stalled:
    """``with Stalled(redis_server):`` SIGSTOP on entry, SIGCONT on the way out (whatever happens)."""

    def __init__(self, server: Any) -> None:
        assert server.process is not None
        self.pid = server.process.pid

    def __enter__(self) -> Stalled:
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def queued_message_bytes(backplane: RedisBackplane) -> int:
    """The envelopes waiting in the publish queue, in bytes (what the process holds for Redis)."""
    return sum(len(args[1]) for op, args in backplane._queue if op in ("publish", "send_to"))


def test_a_stall_with_a_wake_up_behind_a_publish_leaves_later_joins_prompt(redis_server, make):
    """Issue item 3: the wake flag stayed set once its queued wake-up was cleared by a failed publish.

    Every later join then waited for the listener's health check (20 s here) to subscribe, and
    what other processes sent the room meanwhile never arrived.
    """
    recorded = make(publish_timeout=0.5, health_check_interval=20.0)  # the listener does not notice the stall
    backplane = recorded.backplane
    wait_for(lambda: backplane.stats()["up"], "the link")
    with Stalled(redis_server):
        backplane.publish(Message.text("in flight"), None)
        wait_for(lambda: backplane.stats()["pending"] == 0, "the publisher to write it")  # it waits for a reply
        backplane.joined("early")  # its wake-up waits behind that publish
        wait_for(lambda: backplane._link.drops, "the publish to time out")
    wait_for(lambda: backplane.stats()["up"], "the publisher back")
    backplane.joined("later")
    wait_for(lambda: redis_server.subscribers("ignitia:room:later") == 1, "the later join's subscription", timeout=5)
    wait_for(lambda: redis_server.subscribers("ignitia:room:early") == 1, "the early join's subscription", timeout=5)
    redis_server.client().publish("ignitia:room:later", encode(_BROADCAST, Message.text("from elsewhere"), b"9" * 16))
    wait_for(lambda: recorded.broadcasts, "the remote message")
    assert recorded.broadcasts == [(Message.text("from elsewhere"), "later")]


def test_an_id_forgotten_during_a_stall_leaves_the_directory_once_redis_is_back(redis_server, make):
    """Issue item 4: the failed publish cleared the queue and the "forget" in it with the messages.

    The user stayed mapped to this live process: send_to said True, and the message was
    counted as received here and silently dropped.
    """
    recorded = make(publish_timeout=0.5, health_check_interval=20.0)
    backplane = recorded.backplane
    emitter = Emitter(redis_server.url)
    try:
        backplane.identified("alice")
        wait_for(lambda: emitter.send_to("alice", "are you there?"), "alice in the directory")
        with Stalled(redis_server):
            backplane.publish(Message.text("in flight"), None)
            wait_for(lambda: backplane.stats()["pending"] == 0, "the publisher to write it")
            backplane.forgotten("alice")  # she leaves while Redis is stalled
            wait_for(lambda: backplane._link.drops, "the publish to time out")
        wait_for(lambda: backplane.stats()["up"], "the link back")
        wait_for(lambda: emitter.send_to("alice", "still there?") is False, "alice out of the directory")
    finally:
        emitter.close()


def test_the_publish_queue_is_bounded_in_bytes_during_a_stall(redis_server, make):
    """Issue item 5: bounded by count only, a stalled Redis let one process queue hundreds of MiB."""
    recorded = make(publish_timeout=30.0)  # the stall outlasts nothing: the messages wait
    backplane = recorded.backplane
    subscriber = Subscriber(redis_server, "ignitia:all")
    wait_for(lambda: backplane.stats()["up"], "the link")
    payload = b"x" * (1 << 20)  # max_message_size: the largest a backplane publishes
    sent = 40
    with Stalled(redis_server):
        for _ in range(sent):
            backplane.publish(Message.binary(payload), None)
            gevent.sleep(0)  # the publisher writes the first one, then waits for Redis
        held = queued_message_bytes(backplane)
        dropped = backplane.stats()["dropped"]
        assert held <= 16 << 20, f"{held} bytes queued"
        assert dropped >= sent - 16, dropped  # past the bound: dropped and counted, as for max_pending
        assert backplane.stats()["pending_bytes"] <= 16 << 20
    wait_for(lambda: len(subscriber.messages()) == sent - dropped, "what was queued, once Redis is back")
    assert all(message == Message.binary(payload) for message in subscriber.messages())
    wait_for(lambda: backplane.stats()["pending_bytes"] == 0, "the publisher to read Redis's answers")
    assert backplane.stats()["dropped"] == dropped and backplane.stats()["given_up"] == 0


def test_a_pipeline_cut_after_redis_ran_it_is_not_sent_again(redis_server, make):
    """Issue item 6: redis-py retried the whole pipeline after the cut, so the broadcast went out twice."""
    proxy = CuttingProxy(redis_server.port)
    try:
        subscriber = Subscriber(redis_server, "ignitia:all")
        recorded = make(url=proxy.url)
        backplane = recorded.backplane
        wait_for(lambda: backplane.stats()["up"], "the link")
        proxy.cut_after_reply_to(b"exactly once")
        backplane.publish(Message.text("exactly once"), None)
        wait_for(lambda: proxy.cuts == 1, "the cut")
        wait_for(lambda: backplane.stats()["up"], "the link back")
        backplane.publish(Message.text("after the cut"), None)
        wait_for(lambda: Message.text("after the cut") in subscriber.messages(), "the next broadcast")
        assert subscriber.messages() == [Message.text("exactly once"), Message.text("after the cut")]
        assert backplane.stats()["given_up"] == 1  # not confirmed, not resent: counted
    finally:
        proxy.close()


def test_an_emitter_does_not_send_a_command_again_after_a_cut(redis_server):
    """Issue item 6, the Emitter's side: its retry resent a PUBLISH that Redis had run."""
    proxy = CuttingProxy(redis_server.port)
    subscriber = Subscriber(redis_server, "ignitia:all")
    emitter = Emitter(proxy.url)
    try:
        assert emitter.broadcast("before") == 1
        proxy.cut_after_reply_to(b"exactly once")
        with pytest.raises(redis.ConnectionError):
            emitter.broadcast("exactly once")  # delivered, but we cannot know: it raises, it is not resent
        assert proxy.cuts == 1
        assert emitter.broadcast("after the cut") == 1  # a new connection
        wait_for(lambda: Message.text("after the cut") in subscriber.messages(), "the last broadcast")
        assert subscriber.messages() == [Message.text(text) for text in ("before", "exactly once", "after the cut")]
    finally:
        emitter.close()
        proxy.close()


def test_connections_redis_closed_while_idle_are_reconnected_before_writing():
    """No resend does not mean failing on Redis's idle ``timeout``: the pool reconnects before writing."""
    server = RedisServer("--timeout", "1")
    server.start()
    try:
        emitter = Emitter(server.url)
        subscriber = Subscriber(server, "ignitia:all")
        assert emitter.broadcast("first") == 1
        client = server.client()
        wait_for(lambda: len(client.client_list()) == 2, "Redis to close the idle connection")  # the subscriber's stays
        assert emitter.broadcast("after Redis closed it") == 1
        emitter.close()
        assert [message.data for message in subscriber.messages()] == ["first", "after Redis closed it"]
    finally:
        server.kill()
