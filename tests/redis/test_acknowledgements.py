"""Acknowledgements: publish() returns once Redis accepted a room's message (its position), send_to(...,
timeout=) once a local socket took it or Redis handed it to the process that has the id; broadcast
itself never waits."""

from __future__ import annotations

import os
import signal

import pytest
from websockets.sync.client import connect

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.broadcast.positions import History, Position
from ignitia_sync.broadcast.registry import Registry
from ignitia_sync.redis import RedisBackplane
from tests.conftest import url
from tests.waiting import wait_for


def member(ws: WebSocketConnection, name: str) -> None:
    ws.registry.identify(ws, name)
    ws.join("news")
    ws.send("in")
    for _ in ws:
        pass


APP = Router().websocket("/m/:name", member)


def test_publish_returns_the_position_redis_gave_and_times_out_while_redis_is_stopped(serve, redis_server):
    server = serve(APP, backplane=RedisBackplane(redis_server.url, publish_timeout=1.0))
    with connect(url(server, "/m/alice")) as alice:
        assert alice.recv(timeout=5) == "in"
        first = server.registry.publish(Message.text("one"), room="news")
        second = server.registry.publish(Message.text("two"), room="news")
        assert (first.offset, second.offset) == (1, 2) and first.epoch == second.epoch
        assert [alice.recv(timeout=5) for _ in range(2)] == ["one", "two"]
        assert server.registry.position("news") == second
        os.kill(redis_server.process.pid, signal.SIGSTOP)  # accepts nothing meanwhile
        try:
            with pytest.raises(TimeoutError, match=r"not accepted by Redis within 0\.5 s"):
                server.registry.publish(Message.text("three"), room="news", timeout=0.5)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert alice.recv(timeout=15) == "three"  # it was kept: delivered once Redis answered


def test_send_to_waits_for_the_socket_here_and_for_redis_in_another_process(serve, redis_server):
    here = serve(APP, backplane=RedisBackplane(redis_server.url))
    there = serve(APP, backplane=RedisBackplane(redis_server.url))
    with connect(url(here, "/m/alice")) as alice, connect(url(there, "/m/bob")) as bob:
        assert alice.recv(timeout=5) == bob.recv(timeout=5) == "in"
        assert here.registry.send_to("alice", Message.text("local"), timeout=5) is True
        assert alice.recv(timeout=5) == "local"
        wait_for(lambda: redis_server.client().get("{ignitia}:id:bob") is not None, "bob in the directory")
        assert here.registry.send_to("bob", Message.text("remote"), timeout=5) is True
        assert bob.recv(timeout=5) == "remote"
        assert here.registry.send_to("nobody", Message.text("lost"), timeout=5) is False


def test_in_one_process_publish_returns_at_once_and_refuses_a_room_without_positions():
    registry = Registry(history=lambda room: None if room == "typing" else History())
    assert registry.publish(Message.text("a"), room="news") == Position(registry.position("news").epoch, 1)
    with pytest.raises(ValueError, match="keeps no positions"):
        registry.publish(Message.text("a"), room="typing")
    assert registry.send_to("nobody", Message.text("x"), timeout=1) is False
