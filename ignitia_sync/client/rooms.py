"""The client's end of the rooms wire format (``ignitia.rooms.v1``): events in, envelopes out, positions kept.

:func:`~ignitia_sync.client.reconnecting` with ``rooms=True`` (or :func:`connect_rooms` for one
connection) offers the subprotocol, sends the hello with the :class:`Positions` it holds right
after the connection opens, and hands out a :class:`RoomsConnection`: its ``recv()`` returns
parsed events (:class:`Joined`, :class:`RoomMessage`, :class:`Gap`, :class:`Left`, or a plain
``Text``/``Binary`` the handler sent to this client alone), and its ``send*`` wrap each message
in the format's envelope. The frames are those of
:mod:`ignitia_sync.broadcast.rooms_protocol`, read from the other side.

A position moves when the application *receives* an event, never when the socket does: a
room message that arrived but was never returned by ``recv()`` is asked for again at the
next resume. After a :class:`Joined` that is not complete, or a :class:`Gap`, the position
moves to ``recovery.position`` (the application reloads the room's state from elsewhere).

Example:
    >>> decode_event('{"type":"message","room":"lobby","position":{"epoch":"e1","offset":3},"text":"hi"}')
    RoomMessage(room='lobby', position=Position(epoch='e1', offset=3), message=Text(data='hi'))
    >>> decode_event('{"type":"message","binary":"AAE="}')
    Binary(data=b'\\x00\\x01')
    >>> positions = Positions({"lobby": {"epoch": "e1", "offset": 2}})
    >>> encode_hello(positions.snapshot())
    '{"type":"hello","resume":{"lobby":{"epoch":"e1","offset":2}}}'
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import simplejson

from .._support.deadline import Deadline
from .._support.logs import safe_url
from ..broadcast.positions import Position, Recovery
from ..broadcast.rooms_protocol import MAX_RESUMED_ROOMS, SUBPROTOCOL, encode_direct, payload_of_frame
from ..connection.threads import allocate_real_lock
from ..exceptions import InvalidHandshake
from ..message import Binary, Close, Message, Text
from .connection import ClientConnection, connect

__all__ = [
    "SUBPROTOCOL", "Event", "Gap", "Joined", "Left", "Positions", "Presence", "RoomMessage", "RoomsConnection",
    "connect_rooms",
    "decode_event", "encode_hello", "open_rooms",
]

log = logging.getLogger("ignitia_sync.client")

#: The longest close reason a WebSocket allows (bytes of UTF-8).
_MAX_REASON = 123

_dumps = simplejson.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class RoomMessage:
    """A broadcast to ``room``, at ``position``; ``message`` is its ``Text`` or ``Binary``.

    Example:
        >>> RoomMessage("lobby", Position("e1", 3), Message.text("hi")).data
        'hi'
    """

    room: str
    position: Position
    message: Text | Binary

    @property
    def data(self) -> str | bytes:
        """The message's payload: ``str`` for a text, ``bytes`` for a binary."""
        return self.message.data


@dataclass(frozen=True, slots=True)
class Joined:
    """The server's handler joined ``room``; ``recovery.replayed`` missed messages follow.

    ``recovery.complete`` False: what was missed cannot be given (``recovery.reason``: ``"too
    old"``, ``"epoch changed"``, ``"no history"``); reload the room's state, live messages follow.
    """

    room: str
    recovery: Recovery


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages of ``room`` were lost (``recovery.reason``): reload its state; live messages follow."""

    room: str
    recovery: Recovery


@dataclass(frozen=True, slots=True)
class Left:
    """The server's handler took this client out of ``room`` (its position is forgotten)."""

    room: str


@dataclass(frozen=True, slots=True)
class Presence:
    """``user`` arrived in ``room`` (its first connection there, in any process) or left it (``joined`` False).

    Sent by servers with presence on (``presence=True``).

    Example:
        >>> Presence("lobby", "alice", True).joined
        True
    """

    room: str
    user: str
    joined: bool


#: What :meth:`RoomsConnection.recv` returns: a room's event, a direct message, or the peer's Close.
Event: TypeAlias = RoomMessage | Joined | Gap | Left | Presence | Text | Binary | Close


# -- the codec: the server's frames in, the client's hello out -----------------------------------


def _room(frame: dict[str, Any]) -> str:
    room = frame.get("room")
    if not isinstance(room, str):
        raise ValueError(f'a {frame["type"]} frame names its "room" (a string)')
    return room


def _recovery(value: Any) -> Recovery:
    if isinstance(value, dict):
        complete, reason, replayed = value.get("complete"), value.get("reason"), value.get("replayed", 0)
        position = value.get("position")
        if (type(complete) is bool and (reason is None or isinstance(reason, str))
                and type(replayed) is int and replayed >= 0):
            return Recovery(complete, reason, None if position is None else Position.from_json(position), replayed)
    raise ValueError('a recovery is {"complete": bool, "reason": str|null, "position": {...}|null, "replayed": int}')


def decode_event(text: str) -> RoomMessage | Joined | Gap | Left | Presence | Text | Binary:
    """One frame of the server, as the application receives it.

    Raises:
        ValueError: not a JSON object of a known ``type``, or a field missing or malformed.

    Example:
        >>> decode_event('{"type":"left","room":"lobby"}')
        Left(room='lobby')
        >>> decode_event('{"type":"joined","room":"lobby","recovery":{"complete":false,'
        ...              '"reason":"epoch changed","position":{"epoch":"e2","offset":0},"replayed":0}}').recovery.reason
        'epoch changed'
    """
    try:
        frame = simplejson.loads(text)
    except ValueError:
        raise ValueError("a frame must be a JSON object") from None
    if not isinstance(frame, dict):
        raise ValueError("a frame must be a JSON object")
    kind = frame.get("type")
    if kind == "message":
        if "room" not in frame:
            return payload_of_frame(frame)
        return RoomMessage(_room(frame), Position.from_json(frame.get("position")), payload_of_frame(frame))
    if kind == "joined":
        return Joined(_room(frame), _recovery(frame.get("recovery")))
    if kind == "gap":
        return Gap(_room(frame), _recovery(frame.get("recovery")))
    if kind == "left":
        return Left(_room(frame))
    if kind == "presence":
        user, joined = frame.get("user"), frame.get("joined")
        if not isinstance(user, str) or type(joined) is not bool:
            raise ValueError('a presence frame has a string "user" and a boolean "joined"')
        return Presence(_room(frame), user, joined)
    raise ValueError(f"unknown frame type {str(kind)[:40]!r}")


def encode_hello(positions: Mapping[str, Position]) -> str:
    """The client's first frame: the last position it saw in each room (at most the last 1000).

    Example:
        >>> encode_hello({})
        '{"type":"hello","resume":{}}'
    """
    rooms = list(positions.items())[-MAX_RESUMED_ROOMS:]
    return _dumps({"type": "hello", "resume": {room: position.as_json() for room, position in rooms}})


# -- the positions ---------------------------------------------------------------------------------


class Positions:
    """The last position the application received in each room; kept across connections.

    Seeded from a mapping of room names to :class:`Position` or its JSON form (``{"epoch":
    ..., "offset": ...}``, as :meth:`as_json` gives), so a program can save it and resume after
    a restart. Safe to read from any thread.

    Raises:
        ValueError: a seeded position is malformed.

    Example:
        >>> positions = Positions({"lobby": Position("e1", 2)})
        >>> positions.received(RoomMessage("lobby", Position("e1", 3), Message.text("x")))
        >>> positions.as_json()
        {'lobby': {'epoch': 'e1', 'offset': 3}}
    """

    __slots__ = ("_lock", "_rooms")

    def __init__(self, seed: Mapping[str, Position | Mapping[str, Any]] | None = None) -> None:
        self._lock = allocate_real_lock()
        self._rooms: dict[str, Position] = {}
        for room, position in (seed or {}).items():
            if not isinstance(room, str):
                raise ValueError(f"a room name is a string, not {room!r}")
            self._rooms[room] = position if isinstance(position, Position) else Position.from_json(dict(position))

    def snapshot(self) -> dict[str, Position]:
        """Room → position, taken at one moment (least recently moved first)."""
        with self._lock:
            return dict(self._rooms)

    def as_json(self) -> dict[str, dict[str, Any]]:
        """Room → ``{"epoch", "offset"}``: what to save, and seed a later loop with."""
        return {room: position.as_json() for room, position in self.snapshot().items()}

    def received(self, event: Event) -> None:
        """The application received ``event``: move (or forget) its room's position."""
        kind = type(event)
        if kind is RoomMessage:
            self._move(event.room, event.position)  # type: ignore[union-attr]
        elif kind is Joined or kind is Gap:
            recovery: Recovery = event.recovery  # type: ignore[union-attr]
            if recovery.position is None:  # a room without positions: nothing to resume from
                self._forget(event.room)  # type: ignore[union-attr]
            else:  # the replayed messages (if any) follow: each moves it on when received
                start = Position(recovery.position.epoch, max(0, recovery.position.offset - recovery.replayed))
                self._move(event.room, start)  # type: ignore[union-attr]
        elif kind is Left:
            self._forget(event.room)  # type: ignore[union-attr]

    def _move(self, room: str, position: Position) -> None:
        with self._lock:
            self._rooms.pop(room, None)  # the most recently moved last: a hello keeps the last 1000
            self._rooms[room] = position

    def _forget(self, room: str) -> None:
        with self._lock:
            self._rooms.pop(room, None)

    def __repr__(self) -> str:
        return f"Positions({self.snapshot()!r})"


# -- the connection --------------------------------------------------------------------------------


class RoomsConnection:
    """A client connection speaking the rooms wire format: events in, envelopes out.

    Made by :func:`connect_rooms` and by ``reconnecting(url, rooms=True)``, after the hello
    was sent. ``ws`` is the connection under it (its frames are the raw envelopes). Use it
    from the thread that opened it, as any connection.

    Attributes:
        ws: the :class:`~ignitia_sync.client.ClientConnection` underneath.
    """

    __slots__ = ("_positions", "ws")

    def __init__(self, ws: ClientConnection, positions: Positions) -> None:
        self.ws = ws
        self._positions = positions

    # -- receiving --------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Event | None:
        """The next event; ``None`` once the connection is closed.

        A room message moves its room's position as it is returned (a ``Joined`` that is not
        complete, or a ``Gap``, moves it to ``recovery.position``; ``Left`` forgets it). The
        peer's Close is returned as it is; pings and pongs are not (they are answered). A frame
        that breaks the format closes the connection (1008, or 1003 for a binary frame) with
        one log line.

        Raises:
            TimeoutError: no event within ``timeout`` seconds.
        """
        deadline = None if timeout is None else Deadline(timeout)
        ws = self.ws
        while True:
            message = ws.recv(None if deadline is None else deadline.left())
            kind = type(message)
            if kind is Text:
                try:
                    event = decode_event(message.data)  # type: ignore[union-attr]
                except ValueError as exc:
                    self._broken(1008, f"rooms format: {exc}")
                    continue
                self._positions.received(event)
                return event
            if message is None or isinstance(message, Close):
                return message
            if kind is Binary:
                self._broken(1003, "rooms format: frames are JSON text")
            # Ping, Pong: already answered

    def __iter__(self) -> Iterator[Event]:
        """Events until the connection closes (its Close included)."""
        while (event := self.recv()) is not None:
            yield event

    def _broken(self, code: int, reason: str) -> None:
        reason = reason.encode()[:_MAX_REASON].decode(errors="ignore")
        log.warning("closing %r: %s", self.ws, reason)
        self.ws.close(code, reason)

    # -- sending ----------------------------------------------------------------------

    def send(self, message: Message | str | bytes) -> None:
        """Send a message in its envelope (a ``str`` is text, ``bytes`` binary); a Close closes.

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        if isinstance(message, str):
            message = Message.text(message)
        elif isinstance(message, (bytes, bytearray, memoryview)):
            message = Message.binary(bytes(message))
        if type(message) is Text or type(message) is Binary:
            self.ws.send_text(encode_direct(message))
        else:
            self.ws.send(message)

    def send_text(self, text: str) -> None:
        """Send a text message in its envelope: ``{"type":"message","text":...}``."""
        self.ws.send_text(encode_direct(Message.text(text)))

    def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message in its envelope (base64): ``{"type":"message","binary":...}``."""
        self.ws.send_text(encode_direct(Message.binary(bytes(data))))

    def send_json(self, value: Any) -> None:
        """Send ``value`` as JSON text, in its envelope."""
        self.ws.send_text(encode_direct(Message.json(value)))

    # -- state ------------------------------------------------------------------------

    @property
    def positions(self) -> dict[str, Position]:
        """Room → the last position the application received (shared by a loop's connections)."""
        return self._positions.snapshot()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (see ``WebSocketConnection.close``)."""
        self.ws.close(code, reason)

    def close_and_wait(self, code: int = 1000, reason: str = "") -> None:
        """Close and wait for the closing handshake (at most ``close_timeout``)."""
        self.ws.close_and_wait(code, reason)

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed."""
        return self.ws.closed

    @property
    def close_code(self) -> int | None:
        """The close code, once closed."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        """The close reason, once closed."""
        return self.ws.close_reason

    def __enter__(self) -> RoomsConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.ws.close_and_wait()

    def __repr__(self) -> str:
        return f"<RoomsConnection {self.ws!r}>"


def open_rooms(ws: ClientConnection, positions: Positions, url: str) -> RoomsConnection:
    """Speak the rooms format on ``ws``, just opened: check the server's choice, send the hello.

    Raises:
        InvalidHandshake: (not retryable) the server did not choose ``ignitia.rooms.v1``;
            ``ws`` is closed.
        ConnectionClosed: the connection closed before the hello went out.
    """
    if ws.subprotocol != SUBPROTOCOL:
        chosen = "none" if ws.subprotocol is None else repr(ws.subprotocol)[:40]
        ws.close_and_wait(1000, "rooms format needed")
        raise InvalidHandshake(
            f"{safe_url(url)} did not accept the subprotocol {SUBPROTOCOL} (it chose {chosen}): "
            f"serve that route with subprotocols=[SUBPROTOCOL]", retryable=False)
    ws.send_text(encode_hello(positions.snapshot()))
    return RoomsConnection(ws, positions)


def connect_rooms(
    url: str, *, positions: Positions | Mapping[str, Position | Mapping[str, Any]] | None = None, **options: Any
) -> RoomsConnection:
    """One connection in the rooms format: :func:`connect` offering it, then the hello.

    Args:
        url: as :func:`connect`.
        positions: where to resume each room from (a :class:`Positions`, shared and moved on,
            or a mapping to seed a new one).
        **options: every other keyword argument of :func:`connect` but ``subprotocols``.

    Raises:
        InvalidHandshake: the server did not accept ``ignitia.rooms.v1``; and what
            :func:`connect` raises.

    Example::

        with connect_rooms("ws://127.0.0.1:8000/chat") as ws:
            for event in ws:
                print(event)
    """
    if "subprotocols" in options:
        raise TypeError(f"the rooms format offers its subprotocol ({SUBPROTOCOL}) itself: no subprotocols=")
    store = positions if isinstance(positions, Positions) else Positions(positions)
    ws = connect(url, subprotocols=[SUBPROTOCOL], **options)
    try:
        return open_rooms(ws, store, url)
    except BaseException:
        ws.close_and_wait(1000)
        raise
