"""Rooms with positions in one process: broadcast positions, history(), and joins from a position
(what was missed, then live messages: no gap, no duplicate), through a real server and client."""

from __future__ import annotations

import contextlib
import json

import gevent
import pytest
from websockets.sync.client import connect

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.broadcast.positions import History, Position
from ignitia_sync.broadcast.registry import Registry
from tests.conftest import url
from tests.waiting import wait_for


def texts(found):
    return [(position.offset, message.data) for position, message in found]


def test_each_room_counts_its_own_positions_and_history_returns_them():
    registry = Registry()
    for n in range(3):
        registry.broadcast(Message.text(f"a{n}"), room="a")
    registry.broadcast(Message.text("b0"), room="b")
    registry.broadcast(Message.text("to everyone"))  # no room: no position
    assert registry.position("a").offset == 3 and registry.position("b").offset == 1
    recovery, found = registry.history("a")
    assert recovery.complete and texts(found) == [(1, "a0"), (2, "a1"), (3, "a2")]
    start = Position(registry.position("a").epoch, 1)
    recovery, found = registry.history("a", since=start, limit=1)  # paging: the first after since
    assert recovery.complete and texts(found) == [(2, "a1")]
    assert registry.history("a", since=Position("another epoch", 1))[0].reason == "epoch changed"
    with pytest.raises(ValueError, match="limit"):
        registry.history("a", limit=0)


def test_history_none_keeps_no_positions_and_a_function_chooses_per_room():
    assert Registry(history=None).position("lobby") is None
    registry = Registry(history=lambda room: None if room.startswith("typing:") else History(max_messages=2))
    for n in range(3):
        registry.broadcast(Message.text(str(n)), room="typing:lobby")
        registry.broadcast(Message.text(str(n)), room="lobby")
    assert registry.position("typing:lobby") is None
    assert registry.history("typing:lobby") == (registry.history("typing:lobby")[0], [])
    assert texts(registry.history("lobby")[1]) == [(2, "1"), (3, "2")]
    with pytest.raises(TypeError, match="expected a History or None"):
        Registry(history=lambda room: 5).broadcast(Message.text("x"), room="r")


def _joiner(ws: WebSocketConnection) -> None:
    """Joins the room named by the client's first message, from the position in its second."""
    room = ws.recv().data
    since = json.loads(ws.recv().data)
    recovery = ws.join(room, since=None if since is None else Position.from_json(since))
    ws.send_json({"recovery": recovery.as_json()})
    for _ in ws:
        pass


def test_a_join_from_a_position_replays_what_was_missed_then_live_messages(serve):
    server = serve(Router().websocket("/join", _joiner))
    registry = server.registry
    for n in range(1, 6):
        registry.broadcast(Message.text(f"m{n}"), room="news")
    epoch = registry.position("news").epoch
    with connect(url(server, "/join")) as ws:
        ws.send("news")
        ws.send(json.dumps({"epoch": epoch, "offset": 3}))
        assert [ws.recv(timeout=5) for _ in range(2)] == ["m4", "m5"]
        answer = json.loads(ws.recv(timeout=5))["recovery"]
        assert answer == {"complete": True, "reason": None, "position": {"epoch": epoch, "offset": 5}, "replayed": 2}
        server.registry.broadcast_threadsafe(Message.text("m6"), room="news")
        assert ws.recv(timeout=5) == "m6"


def test_a_join_from_a_position_the_history_no_longer_holds_says_so(serve):
    server = serve(Router().websocket("/join", _joiner), history=History(max_messages=2))
    for n in range(1, 6):
        server.registry.broadcast(Message.text(f"m{n}"), room="news")
    epoch = server.registry.position("news").epoch
    with connect(url(server, "/join")) as ws:
        ws.send("news")
        ws.send(json.dumps({"epoch": epoch, "offset": 1}))
        answer = json.loads(ws.recv(timeout=5))["recovery"]  # nothing replayed: the client reloads
        assert answer == {"complete": False, "reason": "too old", "position": {"epoch": epoch, "offset": 5},
                          "replayed": 0}


def test_joins_racing_broadcasts_see_every_offset_once_in_order(serve):
    """Clients join from a position while the server broadcasts to the room without pause: each
    one's replayed and live messages together are every offset after its position, once, in order."""

    def member(ws: WebSocketConnection) -> None:
        ws.join("race", since=Position.from_json(json.loads(ws.recv().data)))
        ws.send("joined")  # goes after the replay, before or among the live messages
        for _ in ws:
            pass

    server = serve(Router().websocket("/member", member), history=History(max_messages=100_000, max_age=600,
                                                                         meta_ttl=600))
    registry = server.registry
    registry.broadcast_threadsafe(Message.text("1"), room="race")
    stop: list[bool] = []
    stopped: list[int] = []

    def flood() -> None:
        n = 1
        while not stop:
            n += 1
            registry.broadcast(Message.text(str(n)), room="race")  # the text is its offset
            gevent.sleep(0)  # joins and reads go on between broadcasts
        stopped.append(n)

    wait_for(lambda: registry.position("race") is not None, "the room's first message")
    epoch = registry.position("race").epoch
    registry.call_threadsafe(flood)
    with contextlib.ExitStack() as stack:
        clients = []
        for _ in range(5):
            ws = stack.enter_context(connect(url(server, "/member")))
            ws.send(json.dumps({"epoch": epoch, "offset": 1}))
            clients.append(ws)
        received: list[list[int]] = []
        for ws in clients:
            got = []
            while (message := ws.recv(timeout=10)) != "joined":
                got.append(int(message))
            received.append(got)
        stop.append(True)
        wait_for(lambda: stopped, "the flood to stop")
        final = stopped[0]
        for ws, got in zip(clients, received, strict=True):
            while not got or got[-1] < final:
                got.append(int(ws.recv(timeout=10)))
            assert got == list(range(2, final + 1))
    assert final > 2  # the broadcasts went on while the clients joined
