"""redis/emitter.py: publishing from a process without WebSockets; a stalled Redis raises, never hangs."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from ignitia_sync import Message
from ignitia_sync.redis import Emitter, decode
from ignitia_sync.redis.positions import decode_positioned

#: The regression bound: far above any timeout set here; reaching it means the call hung.
OUTER_BOUND = 60.0


def next_message(pubsub: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == "message":
            return message
    raise AssertionError("no message")


def test_timeouts_are_set_by_default_and_reach_every_connection(redis_server):
    default, short = Emitter(redis_server.url), Emitter(redis_server.url, socket_timeout=0.5, socket_connect_timeout=0.25)
    try:
        kwargs = default._client.connection_pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (5.0, 5.0)
        kwargs = short._client.connection_pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.5, 0.25)
        assert redis.TimeoutError not in kwargs["retry"]._supported_errors  # a timed-out PUBLISH is not sent twice
        assert short.broadcast("hello") == 0
        connection = short._client.connection_pool.get_connection()
        assert (connection.socket_timeout, connection.socket_connect_timeout) == (0.5, 0.25)
    finally:
        default.close()
        short.close()


@pytest.mark.parametrize("options", [{"socket_timeout": 0}, {"socket_timeout": -1.0}, {"socket_connect_timeout": 0}])
def test_a_timeout_must_be_positive(options):
    with pytest.raises(ValueError, match="must be positive"):
        Emitter("redis://127.0.0.1:1/0", **options)


def test_none_still_means_no_limit_when_asked_for():
    emitter = Emitter("redis://127.0.0.1:1/0", socket_timeout=None, socket_connect_timeout=None)
    kwargs = emitter._client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (None, None)


def test_what_it_sends_is_a_backplane_envelope(redis_server):
    subscriber = redis_server.client().pubsub()
    subscriber.subscribe("ignitia:room:ops", "{ignitia}:proc:" + "f" * 16)
    redis_server.client().set("{ignitia}:id:olga", "f" * 16)
    emitter = Emitter(redis_server.url, history=None)  # rooms without positions: plain broadcasts
    positioned = Emitter(redis_server.url)  # rooms with positions (the default), as the servers'
    try:
        assert emitter.broadcast(b"\x00bin", room="ops") == 1
        kind, sender, id, message = decode(next_message(subscriber)["data"])
        assert (kind, id, message) == (b"B", None, Message.binary(b"\x00bin"))
        assert emitter.send_to("olga", "psst") is True
        assert decode(next_message(subscriber)["data"]) == (b"D", sender, "olga", Message.text("psst"))
        assert emitter.send_to("nobody", "lost") is False
        for n in (1, 2):
            assert positioned.broadcast(f"n{n}", room="ops") == 1
            _, position, seq, message = decode_positioned(next_message(subscriber)["data"])
            assert (position.offset, seq, message) == (n, n, Message.text(f"n{n}"))
    finally:
        emitter.close()
        positioned.close()
        subscriber.close()


def test_a_stalled_redis_raises_within_the_timeout_instead_of_hanging(redis_server):
    """Issue 22 item 8: redis-py 5 to 7 set no timeout, so a stopped Redis held a Celery task forever."""
    established = Emitter(redis_server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    fresh = Emitter(redis_server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    assert established.broadcast("before the stall") == 0  # its connection is open from now on
    outcomes: dict[str, object] = {}

    def attempt(name: str, call: Callable[[], object]) -> None:
        try:
            outcomes[name] = call()
        except Exception as exc:
            outcomes[name] = exc

    calls: dict[str, Callable[[], object]] = {
        "broadcast on an open connection": lambda: established.broadcast("during the stall", room="r"),
        "send_to on an open connection": lambda: established.send_to("alice", "during the stall"),
        "broadcast on a new connection": lambda: fresh.broadcast("during the stall"),
    }
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)  # the kernel still accepts connections; nothing answers
    try:
        threads = [threading.Thread(target=attempt, args=item, daemon=True) for item in calls.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(OUTER_BOUND)
        hung = [name for name in calls if name not in outcomes]
        assert not hung, f"hung on a stalled Redis: {hung}"
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    for name, outcome in outcomes.items():
        assert isinstance(outcome, redis.TimeoutError), f"{name}: {outcome!r}"
        assert "Timeout" in str(outcome), f"{name}: {outcome!r}"
    assert established.broadcast("after the stall") == 0  # and usable again once Redis is back
    established.close()
    fresh.close()
