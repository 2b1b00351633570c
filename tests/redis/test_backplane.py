"""redis/backplane.py: RedisBackplane's link state, callbacks, close and thread hand-over, in this hub.

The backplane's greenlets run in the test's own hub (no monkey-patching): waits go through
``gevent.sleep`` so that they run. Redis is a real redis-server, killed and restarted on its port.
"""

from __future__ import annotations

import logging
import threading

import gevent
import pytest

from ignitia_sync import Message
from ignitia_sync.redis import RedisBackplane
from ignitia_sync.redis.link import LinkState

from ..waiting import wait_for
from .subscriber import Subscriber


def test_publishes_queue_while_the_link_first_comes_up(redis_server, make):
    subscriber = Subscriber(redis_server, "ignitia:all")
    backplane = make()
    assert backplane._link is LinkState.CONNECTING
    backplane.publish(Message.text("early"), None)  # before either connection is up: queued, not dropped
    assert backplane.stats()["pending"] == 1 and backplane.stats()["dropped"] == 0
    wait_for(lambda: backplane.stats()["up"], "the link")
    assert backplane._link is LinkState.UP
    wait_for(subscriber.poll, "the early message")
    assert subscriber.heard == [(b"B", backplane.uid, None, Message.text("early"))]
    assert backplane.stats()["published"] == 1


def test_losing_redis_calls_down_once_drops_and_comes_back_up(redis_server, make, caplog):
    calls: list[str] = []
    backplane = make(on_backplane_down=lambda b: calls.append("down"), on_backplane_up=lambda b: calls.append("up"))
    wait_for(lambda: backplane.stats()["up"], "the link")
    assert calls == ["up"]
    redis_server.kill()
    wait_for(lambda: calls == ["up", "down"], "on_backplane_down")
    assert backplane._link.drops and backplane.stats()["up"] is False
    backplane.publish(Message.text("while down"), None)
    assert backplane.stats()["dropped"] == 1
    redis_server.start()
    wait_for(lambda: backplane.stats()["up"], "the link back")
    assert calls == ["up", "down", "up"] and backplane._link is LinkState.UP
    assert backplane.stats()["reconnects"] >= 1
    lines = [record.getMessage() for record in caplog.records if record.name == "ignitia_sync.redis"]
    assert sum(line.startswith("backplane: connected to Redis (redis://127.0.0.1:") for line in lines) == 1
    assert sum(line.startswith("backplane: Redis is back (redis://127.0.0.1:") for line in lines) == 1
    assert sum(line.startswith("backplane: lost Redis (") for line in lines) == 1
    assert any("dropped 1 message(s): Redis is unreachable" in line for line in lines)


@pytest.mark.expect_errors  # the test makes the callback raise
def test_a_failing_callback_is_logged_and_the_link_still_comes_up(make, caplog):
    def fail(backplane: RedisBackplane) -> None:
        raise RuntimeError("boom")

    backplane = make(on_backplane_up=fail)
    wait_for(lambda: backplane.stats()["up"], "the link")
    assert any(record.getMessage() == "backplane: on_backplane_up callback failed" for record in caplog.records)


def test_calls_from_another_thread_are_handed_over_to_the_hub(redis_server, make):
    subscriber = Subscriber(redis_server, "ignitia:room:ops")
    backplane = make()
    wait_for(lambda: backplane.stats()["up"], "the link")
    assert backplane._handed_over(lambda: None) is False  # this is the backplane's hub
    results: list[object] = []

    def from_a_thread() -> None:
        results.append(backplane._handed_over(lambda: None))
        backplane.joined("ops")
        backplane.identified("tess")
        backplane.publish(Message.text("from a thread"), "ops")
        results.append(backplane.send_to("nobody", Message.text("x")))  # handed over: True, counted later

    thread = threading.Thread(target=from_a_thread)
    thread.start()
    wait_for(lambda: not thread.is_alive(), "the thread")
    assert results == [True, True]
    wait_for(subscriber.poll, "the thread's broadcast")
    assert subscriber.heard[0][3] == Message.text("from a thread")
    wait_for(lambda: redis_server.subscribers("ignitia:room:ops") == 2, "the thread's join")
    wait_for(lambda: redis_server.client().get("{ignitia}:id:tess") == backplane.uid, "the thread's id")
    wait_for(lambda: backplane.stats()["unknown_ids"] == 1, "the thread's send_to")


def test_close_is_the_end_of_the_link(redis_server, make, caplog):
    calls: list[str] = []
    backplane = make(on_backplane_down=lambda b: calls.append("down"))
    backplane.identified("uma")
    wait_for(lambda: redis_server.client().get("{ignitia}:id:uma") is not None, "uma registered")
    backplane.close()
    assert backplane._link is LinkState.CLOSED and backplane.stats()["up"] is False
    assert redis_server.client().get("{ignitia}:id:uma") is None  # forgotten before it returned
    wait_for(lambda: all(greenlet.dead for greenlet in backplane._greenlets), "the greenlets to end")
    backplane.publish(Message.text("too late"), None)
    assert backplane.stats()["dropped"] == 1
    backplane.close()  # idempotent
    assert calls == []  # leaving is not losing Redis
    assert not any("lost Redis" in record.getMessage() for record in caplog.records)


def test_close_from_another_thread_runs_in_the_hub(redis_server, make):
    backplane = make()
    backplane.identified("vic")
    wait_for(lambda: redis_server.client().get("{ignitia}:id:vic") is not None, "vic registered")
    thread = threading.Thread(target=backplane.close)
    thread.start()
    wait_for(lambda: not thread.is_alive() and all(greenlet.dead for greenlet in backplane._greenlets), "the stop")
    assert backplane._link is LinkState.CLOSED
    assert redis_server.client().get("{ignitia}:id:vic") is None


def test_a_backplane_closed_before_it_was_attached_never_starts():
    backplane = RedisBackplane("redis://127.0.0.1:1/0")
    backplane.close()
    assert backplane._link is LinkState.CLOSED and backplane.stats()["up"] is False
    backplane.attach(lambda message, room: None, lambda id, message: None)
    gevent.joinall(backplane._greenlets, timeout=5)
    assert all(greenlet.dead for greenlet in backplane._greenlets)


def test_the_log_lines_name_the_url_without_its_password(redis_server, make, caplog):
    caplog.set_level(logging.INFO, logger="ignitia_sync.redis")
    backplane = RedisBackplane(redis_server.url.replace("redis://", "redis://:secret@"))
    backplane.attach(lambda message, room: None, lambda id, message: None)
    try:
        # Redis has no password: the AUTH fails and the backplane says so, naming the URL.
        wait_for(lambda: any(r.name.startswith("ignitia_sync.redis") for r in caplog.records), "a line of the backplane")
        assert not any("secret" in record.getMessage() for record in caplog.records)
    finally:
        backplane.close()
