"""The rooms wire format (subprotocol ignitia.rooms.v1) spoken by an independent client
(websockets): hello, joined, positioned messages, envelopes both ways, resume after a reconnect,
and a client that breaks the format closed with the right code."""

from __future__ import annotations

import base64
import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL
from tests.conftest import url

ROOMS = [SUBPROTOCOL]


def chat(ws: WebSocketConnection) -> None:
    """Joins "lobby"; echoes each message to the room, and says "you said ..." to the sender alone."""
    ws.join("lobby")
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.registry.broadcast(message, room="lobby")
            if isinstance(message, Message.Text):
                ws.send(f"you said {message.data}")


def frames(ws, count):
    return [json.loads(ws.recv(timeout=5)) for _ in range(count)]


@pytest.fixture
def server(serve):
    return serve(Router().websocket("/chat", chat, subprotocols=ROOMS), hello_timeout=1.0)


def test_a_client_gets_joined_then_positioned_messages_and_its_own_in_envelopes(server):
    with connect(url(server, "/chat"), subprotocols=ROOMS) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        ws.send(json.dumps({"type": "hello"}))
        [joined] = frames(ws, 1)
        assert joined["type"] == "joined" and joined["room"] == "lobby"
        assert joined["recovery"]["complete"] and joined["recovery"]["position"]["offset"] == 0
        epoch = joined["recovery"]["position"]["epoch"]
        ws.send(json.dumps({"type": "message", "text": "hi"}))
        assert frames(ws, 2) == [
            {"type": "message", "room": "lobby", "position": {"epoch": epoch, "offset": 1}, "text": "hi"},
            {"type": "message", "text": "you said hi"},
        ]
        ws.send(json.dumps({"type": "message", "binary": base64.b64encode(b"\x00\xff").decode()}))
        [binary] = frames(ws, 1)
        assert binary["position"]["offset"] == 2 and base64.b64decode(binary["binary"]) == b"\x00\xff"


def test_a_plain_client_of_the_same_route_gets_plain_frames(server):
    with connect(url(server, "/chat")) as plain, connect(url(server, "/chat"), subprotocols=ROOMS) as wire:
        wire.send(json.dumps({"type": "hello"}))
        frames(wire, 1)  # joined
        plain.send("from plain")
        assert plain.recv(timeout=5) == "from plain"  # the room's broadcast, as it was sent
        assert plain.recv(timeout=5) == "you said from plain"
        [message] = frames(wire, 1)
        assert message["text"] == "from plain" and message["position"]["offset"] == 1


def test_a_client_that_reconnects_resumes_from_its_last_position(server):
    with connect(url(server, "/chat"), subprotocols=ROOMS) as ws:
        ws.send(json.dumps({"type": "hello"}))
        epoch = frames(ws, 1)[0]["recovery"]["position"]["epoch"]
        ws.send(json.dumps({"type": "message", "text": "one"}))
        last = frames(ws, 2)[0]["position"]
    for text in ("two", "three"):  # said while the first client was away
        server.registry.broadcast_threadsafe(Message.text(text), room="lobby")
    with connect(url(server, "/chat"), subprotocols=ROOMS) as ws:
        ws.send(json.dumps({"type": "hello", "resume": {"lobby": last}}))
        joined, two, three = frames(ws, 3)
        assert joined["recovery"] == {"complete": True, "reason": None, "replayed": 2,
                                      "position": {"epoch": epoch, "offset": 3}}
        assert [(two["position"]["offset"], two["text"]), (three["position"]["offset"], three["text"])] == [
            (2, "two"), (3, "three")]
        ws.send(json.dumps({"type": "message", "text": "four"}))
        assert frames(ws, 1)[0]["position"] == {"epoch": epoch, "offset": 4}  # live, right after


def test_resuming_from_an_epoch_that_is_gone_is_announced_not_replayed(server):
    with connect(url(server, "/chat"), subprotocols=ROOMS) as ws:
        ws.send(json.dumps({"type": "hello", "resume": {"lobby": {"epoch": "0ld3p0ch", "offset": 9}}}))
        [joined] = frames(ws, 1)
        assert joined["recovery"]["complete"] is False and joined["recovery"]["reason"] == "epoch changed"
        assert joined["recovery"]["replayed"] == 0


@pytest.mark.parametrize(("first", "code", "reason"), [
    ("not json", 1008, "rooms format: a hello frame must be a JSON object"),
    ('{"type": "message", "text": "hi"}', 1008, 'rooms format: expected {"type": "hello", ...}'),
    ('{"type": "hello", "resume": {"lobby": {"epoch": "e", "offset": -1}}}', 1008,
     'rooms format: a position is {"epoch": str (1-32 characters), "offset": int >= 0}'),
    (b"\x00", 1003, "rooms format: frames are JSON text"),
])
def test_a_broken_hello_is_closed_with_its_reason(server, first, code, reason):
    with connect(url(server, "/chat"), subprotocols=ROOMS) as ws:
        ws.send(first)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (code, reason)


def test_no_hello_within_hello_timeout_is_closed(server):
    with connect(url(server, "/chat"), subprotocols=ROOMS) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "rooms format: no hello within 1 s")


@pytest.mark.parametrize(("frame", "code"), [
    ('{"type": "message"}', 1008), ('{"type": "message", "binary": "not base64!"}', 1008), (b"raw", 1003)])
def test_a_broken_message_after_the_hello_is_closed(server, frame, code):
    with connect(url(server, "/chat"), subprotocols=ROOMS) as ws:
        ws.send(json.dumps({"type": "hello"}))
        frames(ws, 1)
        ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == code and closed.value.rcvd.reason.startswith("rooms format: ")


def test_leaving_a_room_is_said_and_send_to_is_wrapped(serve):
    def leaver(ws: WebSocketConnection) -> None:
        ws.join("lobby")
        ws.registry.identify(ws, "alice")
        ws.recv()
        ws.leave("lobby")
        ws.registry.send_to("alice", Message.text("direct"))
        for _ in ws:
            pass

    server = serve(Router().websocket("/leave", leaver, subprotocols=ROOMS))
    with connect(url(server, "/leave"), subprotocols=ROOMS) as ws:
        ws.send(json.dumps({"type": "hello"}))
        frames(ws, 1)
        ws.send(json.dumps({"type": "message", "text": "go"}))
        assert frames(ws, 2) == [{"type": "left", "room": "lobby"}, {"type": "message", "text": "direct"}]
