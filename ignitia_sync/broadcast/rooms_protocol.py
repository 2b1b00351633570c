"""The rooms wire format: JSON frames that carry positions, negotiated as a WebSocket subprotocol.

A client that offers the subprotocol ``ignitia.rooms.v1`` (``Sec-WebSocket-Protocol``) on a
route that accepts it gets every message in a JSON envelope that says which room it came
from and at which :class:`~ignitia_sync.broadcast.positions.Position`; when it reconnects
(to any process) it says where it stopped, and each ``ws.join(room)`` of the handler then
replays what it missed, or says it cannot. The spec is ``docs/rooms-protocol.md``; in short:

Client to server (text frames):

* first, once: ``{"type": "hello", "resume": {"lobby": {"epoch": "9f2c01ab", "offset": 17}}}``
  (``resume`` may be empty or absent: a first connection);
* then ``{"type": "message", "text": "..."}`` or ``{"type": "message", "binary": "<base64>"}``:
  what the handler's ``recv()`` returns, as a Text or a Binary.

Server to client (text frames):

* ``{"type": "joined", "room": "lobby", "recovery": {...}}``: the handler joined the room; the
  ``recovery.replayed`` messages the client missed follow, then live ones;
* ``{"type": "message", "room": "lobby", "position": {"epoch": ..., "offset": 18}, "text": ...}``
  (or ``"binary"``): a broadcast to a room; without ``room`` and ``position``: what the
  handler sent to this client alone (``ws.send``);
* ``{"type": "gap", "room": "lobby", "recovery": {...}}``: messages of the room were lost
  (its log lost data: ``recovery.reason``); reload the room's state, then go on from
  ``recovery.position``;
* ``{"type": "left", "room": "lobby"}``: the handler took the client out of the room;
* ``{"type": "presence", "room": "lobby", "user": "alice", "joined": true}``: a user arrived in
  the room or left it (with the host's ``presence=True``).

Example:
    >>> from ignitia_sync.broadcast.positions import Position
    >>> encode_room_message("lobby", Position("e1", 3), Message.text("hi"))
    '{"type":"message","room":"lobby","position":{"epoch":"e1","offset":3},"text":"hi"}'
    >>> decode_hello('{"type": "hello", "resume": {"lobby": {"epoch": "e1", "offset": 3}}}')
    {'lobby': Position(epoch='e1', offset=3)}
    >>> decode_message('{"type": "message", "text": "hello"}')
    Text(data='hello')
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import simplejson

from ..message import Binary, Message, Text
from .positions import Position, Recovery

__all__ = [
    "MAX_RESUMED_ROOMS", "SUBPROTOCOL", "decode_hello", "decode_message", "encode_direct", "encode_gap",
    "encode_joined", "encode_left", "encode_presence", "encode_room_message", "payload_of_frame",
]

#: The subprotocol a client offers to speak this format.
SUBPROTOCOL = "ignitia.rooms.v1"
#: The most rooms one hello may resume (a client in more reloads the rest).
MAX_RESUMED_ROOMS = 1000

_dumps = simplejson.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _payload(message: Message) -> dict[str, Any]:
    if type(message) is Text:
        return {"text": message.data}
    if type(message) is Binary:
        return {"binary": base64.b64encode(message.data).decode("ascii")}
    raise TypeError(f"only Text and Binary messages travel in the rooms format, not {type(message).__name__}")


def encode_room_message(room: str, position: Position, message: Message) -> str:
    """A broadcast to ``room`` at ``position``, as the client receives it."""
    return _dumps({"type": "message", "room": room, "position": position.as_json(), **_payload(message)})


def encode_direct(message: Message) -> str:
    """What the handler sent to this client alone (``ws.send``).

    Example:
        >>> encode_direct(Message.binary(b"\\x00\\x01"))
        '{"type":"message","binary":"AAE="}'
    """
    return _dumps({"type": "message", **_payload(message)})


def encode_joined(room: str, recovery: Recovery) -> str:
    """The handler joined ``room``; ``recovery.replayed`` missed messages follow.

    Example:
        >>> encode_joined("lobby", Recovery(True, None, Position("e1", 0)))
        '{"type":"joined","room":"lobby","recovery":{"complete":true,"reason":null,"position":{"epoch":"e1","offset":0},"replayed":0}}'
    """
    return _dumps({"type": "joined", "room": room, "recovery": recovery.as_json()})


def encode_gap(room: str, recovery: Recovery) -> str:
    """Messages of ``room`` were lost: reload, then go on from ``recovery.position``.

    Example:
        >>> encode_gap("lobby", Recovery(False, "epoch changed", Position("e2", 0)))[:40]
        '{"type":"gap","room":"lobby","recovery":'
    """
    return _dumps({"type": "gap", "room": room, "recovery": recovery.as_json()})


def encode_left(room: str) -> str:
    """The handler took the client out of ``room``.

    Example:
        >>> encode_left("lobby")
        '{"type":"left","room":"lobby"}'
    """
    return _dumps({"type": "left", "room": room})


def _frame(text: str, kind: str) -> dict[str, Any]:
    try:
        frame = simplejson.loads(text)
    except ValueError:
        raise ValueError(f"a {kind} frame must be a JSON object") from None
    if not isinstance(frame, dict) or frame.get("type") != kind:
        raise ValueError(f'expected {{"type": "{kind}", ...}}')
    return frame


def encode_presence(room: str, user: str, joined: bool) -> str:
    """A user arrived in ``room`` (its first connection there, in any process) or left it (its last).

    Example:
        >>> encode_presence("lobby", "alice", True)
        '{"type":"presence","room":"lobby","user":"alice","joined":true}'
    """
    return _dumps({"type": "presence", "room": room, "user": user, "joined": joined})


def decode_hello(text: str) -> dict[str, Position]:
    """The client's first frame: the position it last saw in each room it resumes.

    Raises:
        ValueError: not a hello; ``resume`` not an object of room names to positions, or
            with more than ``MAX_RESUMED_ROOMS`` rooms.

    Example:
        >>> decode_hello('{"type": "hello"}')
        {}
    """
    resume = _frame(text, "hello").get("resume", {})
    if not isinstance(resume, dict):
        raise ValueError('"resume" must be an object of room names to positions')
    if len(resume) > MAX_RESUMED_ROOMS:
        raise ValueError(f"a hello may resume at most {MAX_RESUMED_ROOMS} rooms")
    return {room: Position.from_json(position) for room, position in resume.items()}


def decode_message(text: str) -> Text | Binary:
    """A client's message frame, as the handler receives it.

    Raises:
        ValueError: not a message frame, or neither a string ``text`` nor a base64 ``binary``.

    Example:
        >>> decode_message('{"type": "message", "binary": "AAE="}')
        Binary(data=b'\\x00\\x01')
    """
    return payload_of_frame(_frame(text, "message"))


def payload_of_frame(frame: dict[str, Any]) -> Text | Binary:
    """The message a ``message`` frame carries (either side's): its ``text``, or its base64 ``binary``.

    Raises:
        ValueError: neither a string ``text`` nor a base64 ``binary``.

    Example:
        >>> payload_of_frame({"type": "message", "room": "lobby", "text": "hi"})
        Text(data='hi')
    """
    data = frame.get("text")
    if isinstance(data, str):
        return Message.text(data)
    encoded = frame.get("binary")
    if isinstance(encoded, str):
        try:
            return Message.binary(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError('"binary" must be base64') from None
    raise ValueError('a message frame has a string "text" or a base64 "binary"')
