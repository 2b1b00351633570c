"""Rooms ordered by a positioned backplane (broadcast/ordered_rooms.py) at their edges: the wire
order of a join's seam (joined first, then replay, gap and live in position order), an epoch
change heard while a first member joins, a join killed in its seam, a fill that finds the log
in another epoch, and rooms without a local member (nothing ordered, nothing kept).

The backplane here is scripted in this process (``ScriptedBackplane``): its ``listen_now`` waits
at a gate the test opens, its log is what the test writes, and the test hands the registry what
"Redis" would publish by calling ``heard`` itself. Everything runs in the test's hub (TestClient).
"""

from __future__ import annotations

import json
from typing import Any

import gevent
import pytest

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.broadcast.backplane import LocalBackplane
from ignitia_sync.broadcast.positions import History, Position
from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL
from ignitia_sync.broadcast.sequencer import Sequencer
from ignitia_sync.testing import TestClient
from tests.waiting import wait_for

ROOMS = [SUBPROTOCOL]


class ScriptedBackplane(LocalBackplane):
    """A PositionedBackplane whose subscription confirmations and log the test controls."""

    uid = b"scripted"

    def __init__(self) -> None:
        self.gate_open = True  # listen_now returns once it is open
        self.logs: dict[str, tuple[Position | None, list[tuple[Position, Message]]]] = {}
        self.reads: list[str] = []
        self.heard: Any = None
        self.offsets: dict[str, int] = {}

    def attach_positions(self, on_positioned: Any, on_relistened: Any) -> None:
        self.heard = on_positioned

    def publish_positioned(self, message: Message, room: str, history: History, token: Any = None) -> bool:
        offset = self.offsets[room] = self.offsets.get(room, 0) + 1
        gevent.spawn(self.heard, room, Position("e", offset), message, token)
        return True

    def listen_now(self, room: str, timeout: float) -> bool:
        waited = 0.0
        while not self.gate_open and waited < timeout:
            gevent.sleep(0.005)
            waited += 0.005
        return self.gate_open

    def read_log(
        self, room: str, after: Position | None, history: History, limit: int
    ) -> tuple[Position | None, list[tuple[Position, Message]]]:
        self.reads.append(room)
        current, messages = self.logs.get(room, (None, []))
        if after is None:
            return current, messages[-limit:] if limit else []
        found = [(p, m) for p, m in messages if p.epoch == after.epoch and p.offset > after.offset]
        return current, found[:limit]


def member(ws: WebSocketConnection, room: str) -> None:
    ws.join(room)
    for _ in ws:
        pass


def killable(ws: WebSocketConnection, room: str) -> None:
    """Joins in a greenlet of its own; "kill" kills that greenlet in the middle of its join."""
    joining = gevent.spawn(ws.join, room)
    for message in ws:
        if message == Message.text("kill"):
            joining.kill()  # GreenletExit inside the join
            ws.send_text("killed")


APP = Router().websocket("/rooms/:room", member, subprotocols=ROOMS).websocket("/killable/:room", killable)


@pytest.fixture
def setup():
    backplane = ScriptedBackplane()
    with TestClient(APP, backplane=backplane) as client:
        yield client, backplane, client.server.registry._ordered


def hello(client: TestClient, room: str, resume: dict[str, Any] | None = None) -> Any:
    ws = client.connect(f"/rooms/{room}", subprotocols=ROOMS)
    ws.send_text(json.dumps({"type": "hello", **({"resume": resume} if resume else {})}))
    return ws


def frame(ws: Any) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=5).data)


def joining(ordered: Any, count: int = 1) -> None:
    wait_for(lambda: len(ordered.seams) == count, f"{count} join(s) in their seam")


def test_a_gap_announced_during_a_members_seam_reaches_it_after_its_joined_frame(setup):
    client, backplane, ordered = setup
    backplane.logs["r"] = (Position("e", 0), [])
    first = hello(client, "r")
    assert frame(first)["type"] == "joined"
    backplane.gate_open = False
    second = hello(client, "r")
    joining(ordered)
    ordered.heard("r", Position("f", 1), Message.text("new epoch"), None)  # the log started again: a gap
    assert [frame(first)["type"] for _ in range(2)] == ["gap", "message"]  # the member already in: at once
    backplane.gate_open = True  # the joiner's log was read before the change (still in e)
    got = [frame(second) for _ in range(3)]
    assert [f["type"] for f in got] == ["joined", "gap", "message"]
    assert got[0]["recovery"]["position"] == {"epoch": "e", "offset": 0}
    assert got[1]["recovery"]["position"] == {"epoch": "f", "offset": 0}
    assert (got[2]["text"], got[2]["position"]) == ("new epoch", {"epoch": "f", "offset": 1})


def test_a_gap_the_joiners_replay_covers_is_not_sent_to_it(setup):
    client, backplane, ordered = setup
    backplane.logs["r"] = (Position("e", 0), [])
    first = hello(client, "r")
    frame(first)
    backplane.gate_open = False
    second = hello(client, "r")
    joining(ordered)
    ordered.heard("r", Position("f", 1), Message.text("new epoch"), None)
    backplane.logs["r"] = (Position("f", 1), [(Position("f", 1), Message.text("new epoch"))])
    backplane.gate_open = True  # the joiner's read sees the new epoch already
    got = frame(second)
    assert got["type"] == "joined" and got["recovery"]["position"] == {"epoch": "f", "offset": 1}
    ordered.heard("r", Position("f", 2), Message.text("live"), None)
    got = frame(second)  # neither the gap nor f:1 again
    assert (got["type"], got["position"]) == ("message", {"epoch": "f", "offset": 2})


def test_an_epoch_notice_heard_while_the_first_member_joins_is_told_to_it(setup):
    client, backplane, ordered = setup
    backplane.logs["n"] = (Position("e", 2), [(Position("e", 1), Message.text("one")),
                                              (Position("e", 2), Message.text("two"))])
    backplane.gate_open = False
    ws = hello(client, "n")
    joining(ordered)
    ordered.heard("n", Position("f", 0), None, None)  # E: the room's log started again
    backplane.gate_open = True  # its read was made before the notice: the log still says e:2
    wait_for(lambda: not ordered.seams, "the join's end")
    ordered.heard("n", Position("f", 1), Message.text("live"), None)
    got = [frame(ws) for _ in range(3)]
    assert [f["type"] for f in got] == ["joined", "gap", "message"]
    assert got[0]["recovery"]["position"] == {"epoch": "e", "offset": 2}
    assert got[1]["recovery"] == {"complete": False, "reason": "epoch changed", "replayed": 0,
                                  "position": {"epoch": "f", "offset": 0}}
    assert got[2]["position"] == {"epoch": "f", "offset": 1}


def test_messages_held_for_a_first_member_come_after_its_joined_frame_and_replay(setup):
    client, backplane, ordered = setup
    backplane.logs["h"] = (Position("e", 2), [(Position("e", 1), Message.text("one")),
                                              (Position("e", 2), Message.text("two"))])
    backplane.gate_open = False
    ws = hello(client, "h", resume={"h": {"epoch": "e", "offset": 1}})
    joining(ordered)
    ordered.heard("h", Position("e", 3), Message.text("three"), None)  # live, heard during the seam
    backplane.gate_open = True
    got = [frame(ws) for _ in range(3)]
    assert [(f["type"], f.get("text")) for f in got] == [("joined", None), ("message", "two"), ("message", "three")]


def test_a_join_killed_in_its_seam_leaves_nothing_held(setup):
    client, backplane, ordered = setup
    backplane.logs["k"] = (Position("e", 0), [])
    registry = client.server.registry
    backplane.gate_open = False
    killed = client.connect("/killable/k", subprotocols=ROOMS)
    killed.send_text(json.dumps({"type": "hello"}))
    joining(ordered)
    killed.send_text("kill")
    wait_for(lambda: not ordered.seams, "the killed join's seam gone")
    assert registry.members("k") == frozenset()  # the join raised: not a member
    assert ordered.sequencer.last("k") is None and not ordered.sequencer._rooms  # nothing held for the room
    backplane.gate_open = True
    other = hello(client, "k")
    assert frame(other)["type"] == "joined"
    ordered.heard("k", Position("e", 1), Message.text("live"), None)
    assert frame(other)["text"] == "live"


def test_a_join_killed_while_another_member_waits_lets_that_members_messages_through(setup):
    client, backplane, ordered = setup
    backplane.logs["k"] = (Position("e", 0), [])
    backplane.gate_open = False
    killed = client.connect("/killable/k", subprotocols=ROOMS)
    killed.send_text(json.dumps({"type": "hello"}))
    joining(ordered)  # the first member: the room is held
    killed.send_text("kill")
    wait_for(lambda: not ordered.seams, "the killed join's seam gone")
    # nothing is held for the room now: the next message heard starts it for whoever joins
    assert (ordered.sequencer.last("k"), ordered.sequencer._rooms.get("k")) == (None, None)


def test_a_fill_that_finds_the_log_in_another_epoch_names_the_new_one(setup):
    client, backplane, ordered = setup
    backplane.logs["g"] = (Position("e", 0), [])
    ws = hello(client, "g")
    assert frame(ws)["type"] == "joined"
    backplane.logs["g"] = (Position("f", 1), [(Position("f", 1), Message.text("first of f"))])  # e is gone
    ordered.heard("g", Position("e", 3), Message.text("three"), None)  # 1 and 2 missing: read after the grace
    got = frame(ws)
    assert got["type"] == "gap" and got["recovery"]["reason"] == "epoch changed"
    assert got["recovery"]["position"] == {"epoch": "f", "offset": 0}
    ordered.heard("g", Position("f", 1), Message.text("first of f"), None)
    got = frame(ws)  # no second gap: the room went on in f
    assert (got["type"], got["position"]) == ("message", {"epoch": "f", "offset": 1})


def test_a_room_without_members_here_is_not_ordered_nor_read(setup):
    client, backplane, ordered = setup
    registry = client.server.registry
    for _ in range(3):  # another process publishes in between: this one hears offsets 1, 3, 5 only
        registry.publish(Message.text("from a view"), room="nobody here", timeout=5)
        backplane.offsets["nobody here"] += 1
    assert ordered.sequencer.last("nobody here") is None and "nobody here" not in ordered._filling
    assert backplane.reads == []


def test_a_room_whose_member_is_discarded_during_its_join_is_forgotten_at_the_joins_end(setup):
    client, backplane, ordered = setup
    registry = client.server.registry
    backplane.logs["d"] = (Position("e", 0), [])
    backplane.gate_open = False
    hello(client, "d")
    joining(ordered)
    (ws,) = registry.members("d")
    registry.discard(ws)  # as its host does at close
    ordered.heard("d", Position("e", 1), Message.text("during"), None)
    backplane.gate_open = True
    wait_for(lambda: not ordered.seams, "the join's end")
    assert ordered.sequencer.last("d") is None and "d" not in ordered.sequencer._rooms


def test_an_epoch_notice_during_a_hold_keeps_what_was_held():
    sequencer = Sequencer()
    sequencer.hold("r")
    sequencer.offer("r", Position("e", 3), "three")
    assert sequencer.notice("r", Position("f", 0)).new_epoch is None  # held, not applied
    sequencer.offer("r", Position("f", 1), "one of f")
    ready = sequencer.start("r", Position("e", 2))
    assert [(p.epoch, p.offset, repr(item)) for p, item in ready] == [
        ("e", 3, "'three'"), ("f", 0, "NEW_EPOCH"), ("f", 1, "'one of f'")]


def test_what_was_held_of_an_older_epoch_than_the_logs_is_dropped_at_the_start():
    sequencer = Sequencer()
    sequencer.hold("r")
    sequencer.offer("r", Position("old", 9), "before the read")
    sequencer.offer("r", Position("e", 2), "two")  # the log's epoch after it: "old" was left before the read
    sequencer.offer("r", Position("e", 3), "three")
    ready = sequencer.start("r", Position("e", 2))
    assert [(p.epoch, p.offset) for p, _ in ready] == [("e", 3)]
    assert sequencer.last("r") == Position("e", 3)
