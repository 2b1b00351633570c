"""The sans-I/O WebSocket protocol: wsproto plus our limits, close handshake and close codes.

Bytes go in with :meth:`WebSocketProtocol.receive_data`, complete :class:`Message` objects
come out of :meth:`WebSocketProtocol.events`, and every byte to write comes back from
:meth:`WebSocketProtocol.send` (or ``send_text``/``send_bytes``), :meth:`~WebSocketProtocol.answer`,
:meth:`~WebSocketProtocol.close`/:meth:`~WebSocketProtocol.fail` and :meth:`~WebSocketProtocol.data_to_send`. This module
never imports ``socket`` or ``gevent``; a test checks it.

Example:
    >>> server = WebSocketProtocol(max_message_size=1024)
    >>> server.receive_data(bytes([0x81, 0x82, 0, 0, 0, 0]) + b"hi")  # masked "hi"
    >>> list(server.events())
    [Text(data='hi')]
    >>> server.send(Message.text("ok"))
    b'\\x81\\x02ok'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from enum import Enum
from itertools import chain

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    TextMessage,
)
from wsproto.events import (
    Ping as PingEvent,
)
from wsproto.events import (
    Pong as PongEvent,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode

from ..exceptions import ConnectionClosed, ProtocolError
from ..message import Binary, Close, CloseFrame, Message, Ping, Pong, Text, not_a_message
from .deflate import FRAGMENT_COST as FRAGMENT_COST
from .deflate import FREE_FRAGMENTS as FREE_FRAGMENTS
from .deflate import _BoundedDeflate, _SizeGuard, deflate_from_response, negotiate_deflate
from .frames import encode_frame, encode_shared_frame, unmask
from .framing import frame as _frame
from .framing import masked_frame as _masked_frame
from .framing import parse as _parse
from .framing import text_frame as _text_frame
from .wsproto_private import decoder_idle

# Frame encoding and masking live in .frames, permessage-deflate and the size guard in
# .deflate; the names imported from there stay importable from here, where they were first.
__all__ = [
    "ProtocolState", "WebSocketProtocol", "deflate_from_response", "encode_frame", "encode_shared_frame",
    "negotiate_deflate", "unmask",
]


_REASONS = {
    1002: "protocol error",
    1007: "invalid frame payload data",
    1009: "message too big",
}


class ProtocolState(Enum):
    """Where the connection is in its life, as the protocol layer sees it."""

    OPEN = "open"
    CLOSING = "closing"  # we sent a Close frame and wait for the peer's
    CLOSED = "closed"  # both Close frames exchanged, or the connection failed or was lost


class WebSocketProtocol:
    """One WebSocket connection's protocol state, after the HTTP upgrade.

    Args:
        client: True for the client role (outgoing frames masked), False for a server.
        max_message_size: the largest message accepted, after decompression; past it
            the connection fails with 1009 while the frames are still arriving.
        deflate: a negotiated permessage-deflate extension (see :func:`negotiate_deflate`).

    Example:
        >>> proto = WebSocketProtocol()
        >>> proto.receive_data(bytes([0x89, 0x80, 1, 2, 3, 4]))  # a masked, empty ping
        >>> [ping] = proto.events()
        >>> ping, proto.answer(ping)
        (Ping(data=b''), b'\\x8a\\x00')
    """

    __slots__ = (
        "_buffer",
        "_deflate",
        "_keys",
        "_masked",
        "_masking",
        "_max_message_size",
        "_outgoing",
        "_parts",
        "_plain_frames",
        "_role",
        "_wsproto",
        "close_code",
        "close_reason",
        "parsing_fast",
        "state",
    )

    def __init__(
        self,
        *,
        client: bool = False,
        max_message_size: int = 1 << 20,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        self._role = ConnectionType.CLIENT if client else ConnectionType.SERVER
        self._deflate = deflate
        self._max_message_size = max_message_size
        # wsproto's connection (and its extensions) is made when first needed: most server
        # connections only ever see frames the fast path handles, and every idle
        # connection saves its memory.
        self._wsproto: Connection | None = None if not client and deflate is None else self._new_wsproto()
        self._plain_frames = not client and deflate is None
        # A client without an extension frames its own messages too, each masked with a key
        # from the operating system's CSPRNG (drawn 64 keys at a time).
        self._masking = client and deflate is None
        self._keys = b""
        # A server reads masked frames (a 4-byte key after the length), a client unmasked ones.
        self._masked = not client
        # The fast path parses the common frames itself (complete, unfragmented data frames,
        # pings and pongs, no RSV bits, masked from a client, unmasked from a server);
        # anything else goes to wsproto until it is idle again.
        #: True while incoming frames are parsed by the fast path (not by wsproto); only the
        #: protocol sets it.
        self.parsing_fast = True
        self._buffer = bytearray()
        # Made when wsproto first needs them (an idle connection holds neither).
        self._outgoing: bytearray | None = None
        self._parts: list[str | bytes] | None = None
        self.state = ProtocolState.OPEN
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def _conn(self) -> Connection:
        if self._wsproto is None:
            self._wsproto = self._new_wsproto()
        return self._wsproto

    def _new_wsproto(self) -> Connection:
        extensions: list[Extension] = [self._deflate] if self._deflate is not None else []
        extensions.append(_SizeGuard(self._max_message_size))
        return Connection(self._role, extensions)

    @property
    def plain_framing(self) -> bool:
        """True when outgoing frames need no per-connection state (server, no extension)."""
        return self._plain_frames

    @property
    def framing_key(self) -> tuple[int, int] | None:
        """For a server whose deflate has no context takeover: the (window bits, memLevel)
        its frames depend on, shared with every such peer (see :func:`encode_shared_frame`);
        None when its frames need its own compressor (or no compressor: see plain_framing)."""
        if isinstance(self._deflate, _BoundedDeflate) and self._role is ConnectionType.SERVER:
            return self._deflate.shared_key()
        return None

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer; an empty ``data`` means end of stream."""
        if self.state is ProtocolState.CLOSED:
            return
        if self.parsing_fast:
            if data:
                self._buffer += data
                return
            if not self._buffer:  # the stream ended between frames, without a Close
                self._finish(1006, "")
                return
            self._hand_over()
        self._conn.receive_data(data or None)

    def _hand_over(self) -> None:
        """Give the unparsed bytes to wsproto; it parses until it is idle again."""
        self.parsing_fast = False
        data, self._buffer = bytes(self._buffer), bytearray()
        if data:
            self._conn.receive_data(data)

    def _wsproto_idle(self) -> bool:
        """True when wsproto holds no partial frame or message (it can be bypassed again)."""
        return (
            decoder_idle(self._conn)
            and not self._parts
            and self._conn.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
        )

    def events(self) -> Iterator[Message]:
        """The messages completed by the data received so far, in order.

        Pings are yielded for the caller to answer (see :meth:`answer`). A peer's Close is
        answered and yielded. When the peer breaks the protocol or a limit,
        :class:`ProtocolError` is raised after every message that came before the bad
        frame has been yielded; the connection stays open for answers to those messages
        until :meth:`fail` is called. The frames are taken from the buffer when this is
        called: iterate to the end.
        """
        if self.parsing_fast:
            # The common case is a list, not a generator: no frame is resumed per message.
            messages = self._fast_messages()
            if self.parsing_fast:
                return iter(messages)
            return chain(messages, self._slow_events())
        return self._slow_events()

    def _slow_events(self) -> Iterator[Message]:
        """wsproto's messages; the fast path takes over again once wsproto is idle."""
        yield from self._wsproto_events()
        if not self.parsing_fast and self._wsproto_idle():
            self.parsing_fast = True

    def _fast_messages(self) -> list[Message]:
        """Parse the common frames straight from the buffer; hand over at the first other one."""
        buf = self._buffer
        messages: list[Message] = []
        pos, incomplete = _parse(buf, self._masked, self._max_message_size, messages)
        if pos:
            del buf[:pos]
        if not incomplete:
            self._hand_over()
        return messages

    def _wsproto_events(self) -> Iterator[Message]:
        conn = self._conn
        for event in conn.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                data = event.data  # type: ignore[attr-defined]
                if event.message_finished and not self._parts:  # type: ignore[attr-defined]
                    yield Text(data) if kind is TextMessage else Binary(bytes(data))
                    continue
                if self._parts is None:
                    self._parts = []
                self._parts.append(data)
                if event.message_finished:  # type: ignore[attr-defined]
                    parts, self._parts = self._parts, None
                    if kind is TextMessage:
                        yield Text("".join(parts))  # type: ignore[arg-type]
                    else:
                        yield Binary(b"".join(parts))  # type: ignore[arg-type]
            elif kind is PingEvent:
                yield Ping(bytes(event.payload))  # type: ignore[attr-defined]
            elif kind is PongEvent:
                yield Pong(bytes(event.payload))  # type: ignore[attr-defined]
            else:
                assert isinstance(event, CloseConnection)
                yield from self._on_close(event)
                return

    def _on_close(self, event: CloseConnection) -> Iterator[Message]:
        if event.code == CloseReason.ABNORMAL_CLOSURE and self._conn.state is ConnectionState.CLOSED:
            # The stream ended without a Close frame.
            self._finish(1006, "")
            return
        if self._conn.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            # wsproto reports a parse failure as a CloseConnection without changing its
            # state (a real Close frame would have moved it on). The caller answers the
            # messages before it, then calls fail(), which sends a Close only when OPEN.
            code = int(event.code)
            detail = event.reason if event.reason and event.reason != "error in extension" else None
            raise ProtocolError(code, detail or _REASONS.get(code, "protocol error"))
        frame = None if event.code == CloseReason.NO_STATUS_RCVD else CloseFrame(int(event.code), event.reason or "")
        if self._conn.state is ConnectionState.REMOTE_CLOSING:
            self._outgoing = (self._outgoing or bytearray()) + self._conn.send(event.response())
            self._finish(int(event.code), event.reason or "")
        else:
            self.state = ProtocolState.CLOSED
        yield Close(frame)

    def _finish(self, code: int, reason: str) -> None:
        self.state = ProtocolState.CLOSED
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason

    def _control(self, opcode: Opcode, payload: bytes, event: Event) -> bytes:
        if len(payload) > 125:
            raise ValueError("control frame payloads are limited to 125 bytes")
        if self._plain_frames:
            return _frame(opcode, payload)
        if self._masking:
            return _masked_frame(opcode, payload, self._key())
        return self._conn.send(event if opcode is not Opcode.PONG else PongEvent(payload=payload))

    def _key(self) -> bytes:
        """A fresh masking key from the CSPRNG; the syscall is made once per 64 keys."""
        keys = self._keys or os.urandom(256)
        self._keys = keys[4:]
        return keys[:4]

    def send(self, message: Message) -> bytes:
        """The bytes that carry ``message`` to the peer.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ValueError: a control frame payload over 125 bytes.
        """
        if self.state is not ProtocolState.OPEN:
            raise ConnectionClosed(self.close_code or 1006, self.close_reason)
        kind = type(message)
        if kind is Text:
            return self.send_text(message.data)  # type: ignore[attr-defined]
        if kind is Binary:
            return self.send_bytes(message.data)  # type: ignore[attr-defined]
        if kind is Ping:
            return self._control(Opcode.PING, message.data, PingEvent(payload=message.data))  # type: ignore[attr-defined]
        if kind is Pong:
            return self._control(Opcode.PONG, message.data, PongEvent(payload=message.data))  # type: ignore[attr-defined]
        if isinstance(message, Close):
            raise TypeError("a Close is sent with close(), not send()")
        raise not_a_message(message)

    def send_text(self, text: str) -> bytes:
        """The bytes of a text message: :meth:`send` of ``Message.text(text)``, without the Message.

        Example:
            >>> WebSocketProtocol().send_text("ok")
            b'\\x81\\x02ok'
        """
        if self.state is not ProtocolState.OPEN:
            raise ConnectionClosed(self.close_code or 1006, self.close_reason)
        if self._plain_frames:
            return _text_frame(text)
        if self._masking:
            return _masked_frame(1, text.encode(), self._key())
        return self._conn.send(TextMessage(data=text))

    def send_bytes(self, data: bytes) -> bytes:
        """The bytes of a binary message: :meth:`send` of ``Message.binary(data)``, without the Message.

        Example:
            >>> WebSocketProtocol().send_bytes(b"ok")
            b'\\x82\\x02ok'
        """
        if self.state is not ProtocolState.OPEN:
            raise ConnectionClosed(self.close_code or 1006, self.close_reason)
        if self._plain_frames:
            return _frame(2, data)
        if self._masking:
            return _masked_frame(2, data, self._key())
        return self._conn.send(BytesMessage(data=data))

    def close(self, code: int | None = 1000, reason: str = "") -> bytes:
        """Start (or answer) the closing handshake; returns the Close frame's bytes.

        Closing twice returns ``b""``.
        """
        if self.state is not ProtocolState.OPEN:
            return b""
        data = self._conn.send(CloseConnection(code=code if code is not None else CloseReason.NO_STATUS_RCVD, reason=reason if code is not None else None))
        if self._conn.state is ConnectionState.CLOSED:
            self._finish(code or 1005, reason)
        else:
            self.state = ProtocolState.CLOSING
            self.close_code, self.close_reason = code or 1005, reason
        return data

    def fail(self, code: int, reason: str | None = None) -> bytes:
        """Fail the connection: the Close frame to send; the state becomes CLOSED.

        Only an OPEN connection sends a Close: once ours is sent (CLOSING) no second one
        may follow, so this returns ``b""`` and the caller just drops the connection.
        After a :class:`ProtocolError` the reason sent is a short, fixed text for the code,
        never the parser's details.

        Example:
            >>> proto = WebSocketProtocol()
            >>> proto.close(1000) and proto.fail(1011), proto.state.value
            (b'', 'closed')
        """
        if self.state is ProtocolState.CLOSED:
            return b""
        reason = reason or _REASONS.get(code, "protocol error")
        if self.state is ProtocolState.CLOSING:
            self._finish(code, reason)
            return b""
        data = self._conn.send(CloseConnection(code=code, reason=reason))
        self._finish(code, reason)
        return data

    def answer(self, ping: Ping) -> bytes:
        """The Pong frame that answers ``ping``; ``b""`` once a Close was sent or received.

        The caller decides which pings get one: a peer that sends many pings may get a
        pong for the last of them only, as RFC 6455 section 5.5.3 allows.

        Raises:
            ValueError: an open connection and a payload over 125 bytes (pings parsed from
                the wire never have one).

        Example:
            >>> WebSocketProtocol().answer(Ping(b"hi"))
            b'\\x8a\\x02hi'
        """
        if self.state is not ProtocolState.OPEN:
            return b""
        if self._plain_frames and len(ping.data) < 126:
            return _frame(0xA, ping.data)
        return self._control(Opcode.PONG, ping.data, PongEvent(payload=ping.data))

    def data_to_send(self) -> bytes:
        """Bytes the protocol produced by itself (the answer to a Close); empties the buffer."""
        if not self._outgoing:
            return b""
        data, self._outgoing = bytes(self._outgoing), None
        return data

    def lose(self) -> None:
        """Record that the transport was lost without a closing handshake (code 1006)."""
        self._finish(1006, "")
