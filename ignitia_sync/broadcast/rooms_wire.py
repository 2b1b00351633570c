"""A connection that speaks the rooms wire format (``ignitia.rooms.v1``): envelopes both ways.

The host calls :func:`install` when the client chose the subprotocol: from then on what the
handler sends (``ws.send``, ``send_text``, ``send_json``...) leaves in a ``message`` envelope,
and the registry frames room broadcasts with their positions (``rooms_protocol.py``).
:func:`read_hello` then takes the client's first frame (the positions it resumes from) before
the handler runs, and unwraps every later ``message`` envelope for ``recv()``. A client that
breaks the format is closed: 1008 with the reason (1003 for a binary frame), one log line.

Example:
    >>> from ignitia_sync import Router
    >>> from ignitia_sync.testing import TestClient
    >>> def chat(ws):
    ...     ws.join("lobby")
    ...     ws.registry.broadcast(ws.recv(), room="lobby")
    >>> app = Router().websocket("/chat", chat, subprotocols=[SUBPROTOCOL])
    >>> with TestClient(app) as client:
    ...     ws = client.connect("/chat", subprotocols=[SUBPROTOCOL])
    ...     ws.send_text('{"type": "hello"}')
    ...     print(ws.recv(timeout=5).data)
    ...     ws.send_text('{"type": "message", "text": "hi"}')
    ...     print(ws.recv(timeout=5).data)
    {"type":"joined","room":"lobby","recovery":{"complete":true,"reason":null,"position":{"epoch":...,"offset":0},"replayed":0}}
    {"type":"message","room":"lobby","position":{"epoch":...,"offset":1},"text":"hi"}
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..connection.connection import Framing, WebSocketConnection
from ..message import Binary, Message, Text
from ..sansio.protocol import ProtocolState
from .rooms_protocol import SUBPROTOCOL, decode_hello, decode_message, encode_direct

__all__ = ["SUBPROTOCOL", "EnvelopeFraming", "install", "read_hello"]

log = logging.getLogger("ignitia_sync.connection")

#: The longest close reason a WebSocket allows (bytes of UTF-8).
_MAX_REASON = 123


class EnvelopeFraming:
    """Frames what the handler sends to this client alone in a ``message`` envelope.

    Control messages (Ping, Pong, Close) go as they are.

    Example:
        >>> from ignitia_sync.sansio.protocol import WebSocketProtocol
        >>> framing = EnvelopeFraming(WebSocketProtocol())
        >>> framing.send_text("hi")[2:]
        b'{"type":"message","text":"hi"}'
    """

    __slots__ = ("_proto",)

    def __init__(self, proto: Framing) -> None:
        self._proto = proto

    @property
    def state(self) -> ProtocolState:
        """The wrapped protocol's state."""
        return self._proto.state

    @property
    def close_code(self) -> int | None:
        """The wrapped protocol's close code."""
        return self._proto.close_code

    @property
    def close_reason(self) -> str:
        """The wrapped protocol's close reason."""
        return self._proto.close_reason

    def send(self, message: Message) -> bytes:
        """A data message in its envelope; a control message as it is."""
        if type(message) is Text or type(message) is Binary:
            return self._proto.send_text(encode_direct(message))
        return self._proto.send(message)

    def send_text(self, text: str) -> bytes:
        """A text message in its envelope."""
        return self._proto.send_text(encode_direct(Message.text(text)))

    def send_bytes(self, data: bytes) -> bytes:
        """A binary message in its envelope (base64)."""
        return self._proto.send_text(encode_direct(Message.binary(data)))


def install(ws: WebSocketConnection) -> None:
    """Make ``ws`` speak the rooms wire format (the client chose ``ignitia.rooms.v1``).

    Example:
        >>> install.__name__
        'install'
    """
    ws._resume = {}
    ws._proto = EnvelopeFraming(ws._proto)


def read_hello(ws: WebSocketConnection, timeout: float) -> bool:
    """Take the client's hello (its resume positions); False when it broke the format (closed).

    From then on, ``recv()`` returns what each ``message`` envelope holds.
    """
    assert ws._resume is not None, "install() first"
    try:
        first = ws.recv(timeout)
    except TimeoutError:
        _refuse(ws, 1008, f"rooms format: no hello within {timeout:g} s")
        return False
    if first is None:
        return False  # the client left (or the server stops)
    if type(first) is not Text:
        _refuse(ws, 1003, "rooms format: frames are JSON text")
        return False
    try:
        ws._resume.update(decode_hello(first.data))
    except ValueError as exc:
        _refuse(ws, 1008, f"rooms format: {exc}")
        return False
    ws._filter = _unwrapping(ws, ws._filter)
    return True


def _unwrapping(
    ws: WebSocketConnection, then: Callable[[Message], Message | None] | None
) -> Callable[[Message], Message | None]:
    """The inbound filter: each envelope's message (then ``then``, a rate limit); None after a close."""

    def unwrap(message: Message) -> Message | None:
        if type(message) is not Text:
            _refuse(ws, 1003, "rooms format: frames are JSON text")
            return None
        try:
            inner: Message | None = decode_message(message.data)
        except ValueError as exc:
            _refuse(ws, 1008, f"rooms format: {exc}")
            return None
        if then is not None and inner is not None:
            inner = then(inner)
        return inner

    return unwrap


def _refuse(ws: WebSocketConnection, code: int, reason: str) -> None:
    """Close a client that broke the format, with one log line saying how (no payload in it)."""
    reason = reason.encode()[:_MAX_REASON].decode(errors="ignore")
    log.info("closing %r: %s", ws, reason)
    ws.close(code, reason)
