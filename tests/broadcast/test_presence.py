"""Presence in one process: one entry per user counting its connections, arrivals and departures told once."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from ignitia_sync import Router, WebSocketConnection
from ignitia_sync.broadcast.registry import Registry
from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL
from tests.conftest import url
from tests.waiting import wait_for


def chat(ws: WebSocketConnection, user: str) -> None:
    ws.registry.set_user(ws, user)
    ws.join("lobby")
    ws.send("in")
    for _ in ws:
        pass


def test_two_tabs_are_one_user_and_arrivals_and_departures_are_told_once(serve):
    server = serve(Router().websocket("/chat/:user", chat), presence=True)
    events: list[tuple[str, str, bool]] = []
    server.registry.on_presence(lambda room, user, joined: events.append((room, user, joined)))
    with connect(url(server, "/chat/alice")) as tab1, connect(url(server, "/chat/alice")) as tab2:
        assert tab1.recv(timeout=5) == tab2.recv(timeout=5) == "in"
        with connect(url(server, "/chat/bob")) as bob:
            assert bob.recv(timeout=5) == "in"
            assert server.registry.presence("lobby") == {"alice": 2, "bob": 1}
        wait_for(lambda: server.registry.presence("lobby") == {"alice": 2}, "bob gone")
        tab1.close()
        wait_for(lambda: server.registry.presence("lobby") == {"alice": 1}, "one tab gone")
    wait_for(lambda: server.registry.presence("lobby") == {}, "alice gone")
    assert events == [("lobby", "alice", True), ("lobby", "bob", True), ("lobby", "bob", False),
                      ("lobby", "alice", False)]  # her second tab and the first tab's leaving: no event


def test_clients_of_the_rooms_wire_format_get_presence_frames(serve):
    def member(ws: WebSocketConnection, user: str) -> None:
        ws.registry.set_user(ws, user)
        ws.join("lobby")
        for _ in ws:
            pass

    server = serve(Router().websocket("/m/:user", member, subprotocols=[SUBPROTOCOL]), presence=True)
    with connect(url(server, "/m/alice"), subprotocols=[SUBPROTOCOL]) as alice:
        alice.send(json.dumps({"type": "hello"}))
        assert json.loads(alice.recv(timeout=5))["type"] == "joined"
        assert json.loads(alice.recv(timeout=5)) == {"type": "presence", "room": "lobby", "user": "alice",
                                                     "joined": True}
        with connect(url(server, "/m/bob"), subprotocols=[SUBPROTOCOL]) as bob:
            bob.send(json.dumps({"type": "hello"}))
            assert json.loads(alice.recv(timeout=5))["user"] == "bob"
        assert json.loads(alice.recv(timeout=5)) == {"type": "presence", "room": "lobby", "user": "bob",
                                                     "joined": False}


def test_a_user_set_after_joining_moves_its_presence_and_a_callback_may_use_the_registry(serve):
    def signs_in(ws: WebSocketConnection) -> None:
        ws.registry.set_user(ws, "guest")
        ws.join("lobby")
        ws.registry.set_user(ws, "alice")  # signed in: the same connection, another user
        ws.send("signed in")
        for _ in ws:
            pass

    server = serve(Router().websocket("/in", signs_in), presence=True)
    seen = []
    server.registry.on_presence(lambda room, user, joined: seen.append((user, joined, server.registry.presence(room))))
    with connect(url(server, "/in")) as ws:
        assert ws.recv(timeout=5) == "signed in"
        assert seen == [("guest", True, {"guest": 1}), ("guest", False, {"alice": 1}), ("alice", True, {"alice": 1})]
    with pytest.raises(RuntimeError, match="presence=True"):
        Registry().presence("lobby")


def test_events_found_by_several_threads_are_told_one_at_a_time_in_order():
    """A threaded registry: while one thread tells an arrival, another's events wait for it."""
    import threading

    registry = Registry(presence=True)
    registry.serve_from_threads()
    told: list[tuple[str, bool]] = []
    first_told, go_on = threading.Event(), threading.Event()

    def slow_callback(room: str, user: str, joined: bool) -> None:
        told.append((user, joined))
        if len(told) == 1:
            first_told.set()
            assert go_on.wait(10)

    registry.on_presence(slow_callback)

    def arrive_and_tell(user: str) -> None:
        with registry._lock:
            registry._presence_joined("lobby", user)
        registry._tell_presence()

    alice = threading.Thread(target=arrive_and_tell, args=("alice",))
    alice.start()
    assert first_told.wait(10)
    arrive_and_tell("bob")  # alice's thread is telling: bob's arrival waits for it, not told beside it
    assert told == [("alice", True)]
    go_on.set()
    alice.join(10)
    assert told == [("alice", True), ("bob", True)]
    assert registry._presence_events == [] and not registry._presence_telling


def test_events_left_when_the_teller_is_killed_are_told_by_the_next_caller():
    import gevent

    registry = Registry(presence=True)
    told: list[str] = []

    def callback(room: str, user: str, joined: bool) -> None:
        told.append(user)
        if user == "alice":
            raise gevent.GreenletExit  # the telling greenlet killed in the middle (a callback that switched)

    registry.on_presence(callback)
    with registry._lock:
        registry._presence_joined("lobby", "alice")
        registry._presence_joined("lobby", "bob")
    with pytest.raises(gevent.GreenletExit):
        registry._tell_presence()
    assert told == ["alice"] and not registry._presence_telling
    registry._tell_presence()
    assert told == ["alice", "bob"]  # bob's arrival was not lost with the greenlet
