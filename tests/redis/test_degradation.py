"""redis/backplane.py degrading gracefully: a hung Redis, the bounded publish queue, oversize
broadcasts kept local, and ids/direct sends through a server with a Redis backplane.

The backplanes of the first tests run in the test's own hub (``wait_for`` sleeps through gevent
so that their greenlets run); a hang is SIGSTOP of the real redis-server (the kernel still
accepts and buffers, nothing answers). The later tests run our server in its own thread with
``backplane=RedisBackplane(...)`` and talk to it with ``websockets``' client.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from websockets.sync.client import connect

from ignitia_sync import Message, Router
from ignitia_sync.broadcast.positions import Position
from ignitia_sync.message import Text
from ignitia_sync.redis import RedisBackplane, decode
from tests.conftest import url
from tests.waiting import wait_for


class Hung:
    """``with Hung(redis_server):`` SIGSTOP on entry, SIGCONT on the way out (whatever happens)."""

    def __init__(self, server: Any) -> None:
        self.pid = server.process.pid

    def __enter__(self) -> Hung:
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "ignitia_sync.redis"]


# -- a hung Redis, callbacks, publish_timeout ------------------------------------------------------

def test_a_hung_redis_is_down_after_publish_timeout_and_up_again_once_it_answers(redis_server, make, caplog):
    calls: list[tuple[str, RedisBackplane]] = []
    backplane = make(publish_timeout=0.3, health_check_interval=30.0,  # only the publisher can notice
                     on_backplane_down=lambda b: calls.append(("down", b)),
                     on_backplane_up=lambda b: calls.append(("up", b)))
    wait_for(lambda: backplane.stats()["up"], "the link")
    assert calls == [("up", backplane)]
    with Hung(redis_server):
        backplane.publish(Message.text("in flight"), None)  # written, then no answer within 0.3 s
        wait_for(lambda: len(calls) == 2, "on_backplane_down")
        assert calls[1] == ("down", backplane)
        stats = backplane.stats()
        assert stats["up"] is False and stats["given_up"] == 1 and stats["dropped"] == 1
        backplane.publish(Message.text("while hung"), None)  # dropped at once: never queued
        assert backplane.stats()["dropped"] == 2 and backplane.stats()["pending"] == 0
        assert len(calls) == 2  # reconnect attempts that time out call nothing more
    wait_for(lambda: backplane.stats()["up"], "the link back once Redis answers")
    assert [name for name, _ in calls] == ["up", "down", "up"] and calls[2][1] is backplane
    assert backplane.stats()["given_up"] == 1 and backplane.stats()["dropped"] == 2
    logged = lines(caplog)
    assert sum(line.startswith("backplane: lost Redis (redis://127.0.0.1:") for line in logged) == 1
    assert any(line.startswith("backplane: dropped 1 message(s): the connection to Redis failed once they "
                               "were written: not sent again, maybe delivered (1 given up so far)")
               for line in logged)
    assert any(line == "backplane: dropped 1 message(s): Redis is unreachable (2 dropped so far)" for line in logged)


def test_a_hung_redis_is_noticed_by_the_listener_health_check_without_any_publish(redis_server, make):
    calls: list[str] = []
    backplane = make(health_check_interval=0.2, publish_timeout=0.3,
                     on_backplane_down=lambda b: calls.append("down"), on_backplane_up=lambda b: calls.append("up"))
    wait_for(lambda: backplane.stats()["up"], "the link")
    with Hung(redis_server):
        wait_for(lambda: calls == ["up", "down"], "the unanswered ping to take the link down")
        assert backplane.stats()["dropped"] == 0  # nothing was being published
    wait_for(lambda: calls == ["up", "down", "up"], "the link back")
    assert backplane.stats()["reconnects"] >= 1


# -- the publish queue's bounds ------------------------------------------------------------------

def test_max_pending_drops_the_newest_messages_and_counts_them(redis_server, make, caplog):
    subscriber = redis_server.client().pubsub()
    subscriber.subscribe("ignitia:all")
    backplane = make(max_pending=3, publish_timeout=30.0)
    wait_for(lambda: backplane.stats()["up"], "the link")
    with Hung(redis_server):
        backplane.publish(Message.text("m0"), None)
        wait_for(lambda: backplane.stats()["pending"] == 0, "the publisher to write m0 and wait for Redis")
        for n in range(1, 7):  # m1..m3 fill the queue; m4..m6 are over max_pending
            backplane.publish(Message.text(f"m{n}"), None)
        stats = backplane.stats()
        assert stats["pending"] == 3 and stats["dropped"] == 3 and stats["up"] is True
    assert "backplane: dropped 1 message(s): 3 messages already wait to be published (3 dropped so far)" in lines(caplog)
    heard: list[Message] = []

    def poll() -> int:
        while (message := subscriber.get_message(timeout=0.01)) is not None:
            if message["type"] == "message" and message["data"] != b"W":
                heard.append(decode(message["data"])[3])
        return len(heard)

    wait_for(lambda: poll() == 4, "m0..m3 once Redis answers")
    assert heard == [Message.text(f"m{n}") for n in range(4)]  # the oldest kept, in order
    wait_for(lambda: backplane.stats()["published"] == 4, "Redis's answers")
    assert backplane.stats()["dropped"] == 3


def test_max_pending_bytes_counts_the_batch_being_written_and_drops_what_would_pass_it(redis_server, make, caplog):
    backplane = make(max_pending_bytes=3000, publish_timeout=30.0)
    wait_for(lambda: backplane.stats()["up"], "the link")
    payload = b"x" * 1000  # an envelope is 1000 bytes plus its head
    with Hung(redis_server):
        backplane.publish(Message.binary(payload), None)
        wait_for(lambda: backplane.stats()["pending"] == 0, "the publisher to write the first one")
        writing = backplane.stats()["pending_bytes"]
        assert 1000 < writing < 1100  # being written still counts: Redis has not answered
        backplane.publish(Message.binary(payload), None)  # 2 envelopes: fits in 3000
        assert backplane.stats()["dropped"] == 0
        backplane.publish(Message.binary(payload), None)  # a third would pass 3000 bytes
        stats = backplane.stats()
        assert stats["dropped"] == 1 and stats["pending"] == 1 and stats["pending_bytes"] == 2 * writing
        backplane.publish(Message.text("small"), None)  # a small one still fits
        assert backplane.stats()["pending"] == 2 and backplane.stats()["dropped"] == 1
    assert any(line.startswith(f"backplane: dropped 1 message(s): {2 * writing} bytes already wait to be published "
                               "(max_pending_bytes 3000)") for line in lines(caplog))
    wait_for(lambda: backplane.stats()["published"] == 3, "the three queued once Redis answers")
    assert backplane.stats()["pending_bytes"] == 0 and backplane.stats()["dropped"] == 1


# -- through a server: oversize broadcasts, identify, send_to ------------------------------------

def member(ws: Any) -> None:
    ws.join("r")
    ws.send_text("joined")
    for _ in ws:
        pass


def shout(ws: Any, size: str) -> None:
    try:
        ws.registry.broadcast(Message.text("y" * int(size)), room="r")
    except ValueError as exc:  # over a Redis backplane's max_message_size, in a room with positions
        ws.send_text(f"refused: {exc}")
        return
    ws.send_text("sent")
    for _ in ws:
        pass


def who(ws: Any, name: str) -> None:
    try:
        ws.registry.identify(ws, name)
    except ValueError as exc:
        ws.send_text(f"refused: {exc}")
        return
    ws.send_text("ok")
    for message in ws:
        if not isinstance(message, Text):
            continue  # the peer's Close
        target, _, text = str(message.data).partition(":")
        ws.send_text(f"send_to {target}: {ws.registry.send_to(target, Message.text(text))}")


ROUTER = Router().websocket("/member", member).websocket("/shout/:size", shout).websocket("/who/:name", who)


def test_an_oversize_broadcast_to_a_room_with_positions_is_refused_to_its_caller_and_the_epoch_stays(
        serve, redis_server):
    here = serve(ROUTER, backplane=RedisBackplane(redis_server.url, max_message_size=1000))
    there = serve(ROUTER, backplane=redis_server.url)
    with connect(url(here, "/member")) as local, connect(url(there, "/member")) as remote:
        assert local.recv(timeout=5) == "joined" and remote.recv(timeout=5) == "joined"
        with connect(url(here, "/shout/10")) as shouter:
            assert shouter.recv(timeout=5) == "sent"
        assert local.recv(timeout=5) == remote.recv(timeout=5) == "y" * 10
        before = here.registry.position("r")
        with connect(url(here, "/shout/1001")) as shouter:  # over max_message_size: the broadcast raises
            assert shouter.recv(timeout=5) == (
                "refused: a message of 1001 bytes is over the backplane's max_message_size (1000 bytes)")
        with connect(url(here, "/shout/1000")) as shouter:
            assert shouter.recv(timeout=5) == "sent"
        assert local.recv(timeout=5) == "y" * 1000  # the oversize one reached no one, here neither
        assert remote.recv(timeout=5) == "y" * 1000
        after = here.registry.position("r")
        assert after == Position(before.epoch, before.offset + 1)  # no gap: the same epoch goes on
    stats = here.stats()["backplane"]
    assert stats["dropped"] == 0 and stats["published"] == 2


def test_an_oversize_broadcast_to_a_room_without_positions_is_delivered_locally_but_not_published(
        serve, redis_server):
    here = serve(ROUTER, backplane=RedisBackplane(redis_server.url, max_message_size=1000), history=None)
    there = serve(ROUTER, backplane=redis_server.url, history=None)
    with connect(url(here, "/member")) as local, connect(url(there, "/member")) as remote:
        assert local.recv(timeout=5) == "joined" and remote.recv(timeout=5) == "joined"
        wait_for(lambda: redis_server.subscribers("ignitia:room:r") == 2, "both processes subscribed")
        for size in (1001, 1000):  # the first is over max_message_size, the second is not
            with connect(url(here, f"/shout/{size}")) as shouter:
                assert shouter.recv(timeout=5) == "sent"
        assert local.recv(timeout=5) == "y" * 1001
        assert local.recv(timeout=5) == "y" * 1000
        assert remote.recv(timeout=5) == "y" * 1000  # the oversize one never reached the other process
    stats = here.stats()["backplane"]
    assert stats["dropped"] == 1 and stats["published"] == 1


def test_identify_refuses_an_id_held_by_another_live_connection_here_or_in_another_process(serve, redis_server):
    here = serve(ROUTER, backplane=redis_server.url)
    there = serve(ROUTER, backplane=redis_server.url)
    with connect(url(here, "/who/alice")) as alice:
        assert alice.recv(timeout=5) == "ok"
        with connect(url(here, "/who/alice")) as twin:
            assert twin.recv(timeout=5) == "refused: id 'alice' is taken by another connection"
        with connect(url(there, "/who/alice")) as elsewhere:
            assert elsewhere.recv(timeout=5) == (
                "refused: id 'alice' is taken by a connection in another process "
                "(identify(ws, id, take_over=True) moves it here)")
        assert there.stats()["backplane"]["ids_refused"] == 1
        assert here.registry.get("alice") is not None and there.registry.get("alice") is None
    wait_for(lambda: here.registry.get("alice") is None, "alice gone")
    with connect(url(there, "/who/alice")) as later:  # once she left, the id is free again
        assert later.recv(timeout=5) == "ok"


def test_send_to_an_id_in_the_same_process_is_delivered_without_redis(serve, redis_server):
    server = serve(ROUTER, backplane=redis_server.url)
    with connect(url(server, "/who/bob")) as bob, connect(url(server, "/who/carol")) as carol:
        assert bob.recv(timeout=5) == "ok" and carol.recv(timeout=5) == "ok"
        carol.send("bob:hello from carol")
        assert carol.recv(timeout=5) == "send_to bob: True"
        assert bob.recv(timeout=5) == "hello from carol"
        carol.send("nobody:anyone?")
        assert carol.recv(timeout=5) == "send_to nobody: True"  # handed to the backplane: unknown later
        wait_for(lambda: server.stats()["backplane"]["unknown_ids"] == 1, "Redis's answer for nobody")
    assert server.stats()["backplane"]["published"] == 0  # bob's message never went through Redis
