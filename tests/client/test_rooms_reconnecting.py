"""reconnecting(url, rooms=True): the client's end of the rooms wire format (ignitia.rooms.v1)
against real servers: it resumes each room from the last position the application received,
across dropped connections, a restarted server process and a restarted program."""

from __future__ import annotations

import contextlib
import json
import sys

import pytest

from ignitia_sync import InvalidHandshake, Message, Router
from ignitia_sync.broadcast.positions import Position, Recovery
from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL
from ignitia_sync.client import Backoff, Joined, Positions, RoomMessage, connect_rooms, reconnecting
from ignitia_sync.client.rooms import Gap, Left, decode_event, encode_hello
from tests.client_rooms_server import lobby
from tests.conftest import url
from tests.subprocess_server import free_port, running
from tests.waiting import wait_for

FAST = Backoff(first=0.05, factor=1.0, cap=0.05)


@pytest.fixture
def server(serve):
    return serve(Router().websocket("/rooms", lobby, subprotocols=[SUBPROTOCOL]))


def say(server, *texts):
    """Broadcast to "lobby" from the test's thread; return once the room's log holds them."""
    start = server.registry.position("lobby").offset
    for text in texts:
        server.registry.broadcast_threadsafe(Message.text(text), room="lobby")
    wait_for(lambda: server.registry.position("lobby").offset == start + len(texts), f"{texts} in the log")


def nobody_in_the_lobby(server):
    wait_for(lambda: not any("lobby" in rooms for rooms in server.registry.memberships().values()),
             "the old connection gone from the room")


def room_texts(ws, count):
    events = [ws.recv(timeout=5) for _ in range(count)]
    assert all(isinstance(event, RoomMessage) and event.room == "lobby" for event in events), events
    return [(event.position.offset, event.data) for event in events]


def test_a_connection_the_server_closes_resumes_with_every_message_once_in_order(server):
    loop = reconnecting(url(server, "/rooms"), rooms=True, backoff=FAST)
    received, joins = [], []
    for ws in loop:
        joined = ws.recv(timeout=5)
        assert isinstance(joined, Joined) and joined.room == "lobby"
        joins.append(joined.recovery)
        if loop.connections == 1:
            say(server, "m1", "m2")
            received += room_texts(ws, 2)
            server.registry.close_all(1012, "service restart")
            assert ws.recv(timeout=5) == Message.close_with_reason(1012, "service restart")
            assert ws.recv(timeout=5) is None
            nobody_in_the_lobby(server)
            say(server, "m3", "m4", "m5")  # said while the client is away
            continue
        received += room_texts(ws, 3)  # replayed
        say(server, "m6")
        received += room_texts(ws, 1)  # live
        loop.stop()
    assert received == [(1, "m1"), (2, "m2"), (3, "m3"), (4, "m4"), (5, "m5"), (6, "m6")]
    assert [(r.complete, r.reason, r.replayed) for r in joins] == [(True, None, 0), (True, None, 3)]
    assert loop.connections == 2 and loop.positions["lobby"].offset == 6


def test_a_message_received_but_never_returned_to_the_app_is_asked_for_again(server):
    loop = reconnecting(url(server, "/rooms"), rooms=True, backoff=FAST)
    for ws in loop:
        joined = ws.recv(timeout=5)
        if loop.connections == 1:
            say(server, "one", "two", "three")
            assert room_texts(ws, 2) == [(1, "one"), (2, "two")]
            wait_for(lambda conn=ws.ws: conn.messages_in >= 4, "'three' in the inbox")  # joined + 3
            assert loop.positions["lobby"].offset == 2  # "three" arrived, but the app has not got it
            continue  # the app drops this connection without reading on
        assert isinstance(joined, Joined) and joined.recovery.complete and joined.recovery.replayed == 1
        assert room_texts(ws, 1) == [(3, "three")]
        loop.stop()


def test_a_room_joined_but_silent_resumes_from_its_joined_position(server):
    say(server, "old")  # before the client: not for it
    loop = reconnecting(url(server, "/rooms"), rooms=True, backoff=FAST)
    for ws in loop:
        joined = ws.recv(timeout=5)
        assert isinstance(joined, Joined)
        if loop.connections == 1:
            assert joined.recovery.position.offset == 1 and loop.positions["lobby"].offset == 1
            server.registry.close_all(1012, "service restart")
            while ws.recv(timeout=5) is not None:
                pass
            nobody_in_the_lobby(server)
            say(server, "missed")
            continue
        assert (joined.recovery.complete, joined.recovery.replayed) == (True, 1)
        assert room_texts(ws, 1) == [(2, "missed")]
        loop.stop()


def test_a_restarted_server_process_is_a_new_epoch_announced_then_live_messages():
    port = free_port()
    command = [sys.executable, "-m", "ignitia_sync", "tests.client_rooms_server:router", "--port", str(port)]
    with contextlib.ExitStack() as servers:
        process = servers.enter_context(running(command, port))
        loop = reconnecting(f"ws://127.0.0.1:{port}/rooms", rooms=True, backoff=FAST, close_timeout=2)
        for ws in loop:
            if loop.connections == 1:
                assert isinstance(ws.recv(timeout=10), Joined)
                ws.send_text("before")
                assert room_texts(ws, 1)[0][1] == "before"
                old = loop.positions["lobby"]
                process.terminate()  # SIGTERM: the server closes with 1001 and exits
                while ws.recv(timeout=10) is not None:
                    pass
                servers.close()
                process = servers.enter_context(running(command, port))
                continue
            assert loop.positions["lobby"] == old  # not moved before the app got the Joined
            joined = ws.recv(timeout=10)
            assert isinstance(joined, Joined) and joined.room == "lobby"
            assert (joined.recovery.complete, joined.recovery.reason, joined.recovery.replayed) == (
                False, "epoch changed", 0)
            new = joined.recovery.position
            assert new is not None and new.epoch != old.epoch and new.offset == 0
            assert loop.positions["lobby"] == new  # the app must resync: the position moved on
            ws.send_text("after")
            assert room_texts(ws, 1) == [(1, "after")]
            assert loop.positions["lobby"] == Position(new.epoch, 1)
            loop.stop()
    assert loop.connections == 2 and loop.attempts >= 2


def test_positions_saved_by_one_loop_seed_the_next_one(server):
    first = reconnecting(url(server, "/rooms"), rooms=True)
    for ws in first:
        ws.recv(timeout=5)  # joined
        say(server, "a", "b")
        room_texts(ws, 2)
        first.stop()
    saved = json.dumps({room: position.as_json() for room, position in first.positions.items()})
    nobody_in_the_lobby(server)
    say(server, "c", "d")
    second = reconnecting(url(server, "/rooms"), rooms=True, positions=json.loads(saved))
    assert second.positions == {"lobby": first.positions["lobby"]}
    for ws in second:
        joined = ws.recv(timeout=5)
        assert isinstance(joined, Joined) and (joined.recovery.complete, joined.recovery.replayed) == (True, 2)
        assert room_texts(ws, 2) == [(3, "c"), (4, "d")]
        second.stop()
    assert second.positions["lobby"].offset == 4


def test_sends_are_wrapped_and_events_unwrapped_text_and_binary(server):
    loop = reconnecting(url(server, "/rooms"), rooms=True)
    for ws in loop:
        assert ws.ws.subprotocol == SUBPROTOCOL
        ws.recv(timeout=5)  # joined
        ws.send_text("héllo ✓")
        assert [ws.recv(timeout=5) for _ in range(2)] == [
            RoomMessage("lobby", Position(server.registry.position("lobby").epoch, 1), Message.text("héllo ✓")),
            Message.text("you said héllo ✓"),  # the handler's own send: a plain message
        ]
        ws.send_bytes(b"\x00\xff")
        room, direct = ws.recv(timeout=5), ws.recv(timeout=5)
        assert isinstance(room, RoomMessage) and room.message == Message.binary(b"\x00\xff")
        assert direct == Message.binary(b"you sent \x00\xff")
        ws.send_json({"n": [1, 2]})
        ws.send(b"\x01")
        assert [event.data for event in (ws.recv(timeout=5) for _ in range(4))] == [
            '{"n":[1,2]}', 'you said {"n":[1,2]}', b"\x01", b"you sent \x01"]
        loop.stop()


def test_connect_rooms_opens_one_connection_that_resumes_from_given_positions(server):
    say(server, "x", "y")
    epoch = server.registry.position("lobby").epoch
    positions = Positions({"lobby": {"epoch": epoch, "offset": 1}})
    with connect_rooms(url(server, "/rooms"), positions=positions) as ws:
        assert ws.recv(timeout=5) == Joined("lobby", Recovery(True, None, Position(epoch, 2), 1))
        assert room_texts(ws, 1) == [(2, "y")]
    assert positions.as_json() == {"lobby": {"epoch": epoch, "offset": 2}}


def test_a_server_without_the_subprotocol_is_one_clear_error(serve):
    plain = serve(Router().websocket("/plain", lambda ws: [ws.send(m) for m in ws]))
    loop = reconnecting(url(plain, "/plain"), rooms=True, backoff=FAST)
    with pytest.raises(InvalidHandshake) as refused:
        for _ in loop:
            pytest.fail("no connection without the rooms format")
    message = str(refused.value)
    assert "\n" not in message and "did not accept the subprotocol ignitia.rooms.v1" in message
    assert not refused.value.retryable and loop.attempts == 1 and loop.connections == 0
    with pytest.raises(InvalidHandshake, match=r"ignitia\.rooms\.v1"):
        connect_rooms(url(plain, "/plain"))
    wait_for(lambda: plain.stats()["close_codes"] == {1000: 2}, "both connections closed by the client")


def test_the_loop_arguments_are_checked():
    with pytest.raises(TypeError, match="rooms=True"):
        reconnecting("ws://127.0.0.1:1/", positions={})
    with pytest.raises(TypeError, match="offers its subprotocol"):
        reconnecting("ws://127.0.0.1:1/", rooms=True, subprotocols=["chat"])
    with pytest.raises(ValueError, match="a position is"):
        reconnecting("ws://127.0.0.1:1/", rooms=True, positions={"lobby": {"epoch": "", "offset": 1}})


# -- the codec and the positions, pure ----------------------------------------------------------


def test_gaps_and_incomplete_joins_move_the_position_only_when_received_left_forgets_it():
    positions = Positions({"lobby": Position("e1", 4), "news": Position("e1", 9)})
    gap = decode_event('{"type":"gap","room":"lobby","recovery":{"complete":false,"reason":"too old",'
                       '"position":{"epoch":"e1","offset":20},"replayed":0}}')
    assert isinstance(gap, Gap) and positions.snapshot()["lobby"] == Position("e1", 4)  # decoded, not received
    positions.received(gap)
    assert positions.snapshot()["lobby"] == Position("e1", 20)
    replaying = decode_event('{"type":"joined","room":"news","recovery":{"complete":true,"reason":null,'
                             '"position":{"epoch":"e1","offset":12},"replayed":3}}')
    positions.received(replaying)  # the 3 replayed messages (10-12) follow: each moves it when received
    assert positions.snapshot()["news"] == Position("e1", 9)
    positions.received(decode_event('{"type":"left","room":"lobby"}'))
    assert positions.snapshot() == {"news": Position("e1", 9)}
    assert decode_event('{"type":"left","room":"lobby"}') == Left("lobby")


def test_the_hello_resumes_the_most_recently_moved_rooms_first_at_most_1000():
    positions = Positions({f"room{i}": Position("e", i) for i in range(1001)})
    positions.received(RoomMessage("room0", Position("e", 5), Message.text("x")))
    resume = json.loads(encode_hello(positions.snapshot()))["resume"]
    assert len(resume) == 1000 and "room1" not in resume and resume["room0"] == {"epoch": "e", "offset": 5}


@pytest.mark.parametrize(("frame", "error"), [
    ("[]", "a frame must be a JSON object"),
    ('{"type":"party"}', "unknown frame type 'party'"),
    ('{"type":"message","room":"lobby","text":"x"}', "a position is"),
    ('{"type":"message","binary":"not base64!"}', '"binary" must be base64'),
    ('{"type":"joined","room":"lobby","recovery":{"complete":"yes"}}', "a recovery is"),
    ('{"type":"left"}', 'a left frame names its "room"'),
])
def test_a_broken_server_frame_is_refused_by_the_decoder(frame, error):
    with pytest.raises(ValueError, match=error.replace("(", r"\(")):
        decode_event(frame)
