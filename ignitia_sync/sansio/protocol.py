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
import struct
import zlib
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
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ..exceptions import ConnectionClosed, ProtocolError
from ..message import Binary, Close, CloseFrame, Message, Ping, Pong, Text
from .wsproto_private import decoder_idle

__all__ = [
    "ProtocolState", "WebSocketProtocol", "deflate_from_response", "encode_frame", "encode_shared_frame",
    "negotiate_deflate", "unmask",
]


def _unmask_python(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask``, as one big-integer operation."""
    length = len(data)
    if not length:
        return b""
    key = mask * ((length >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(len(key), "little")[:length]


try:  # websockets' SIMD C routine: about 1 µs per 16 KiB instead of about 45 µs
    if os.environ.get("IGNITIA_SYNC_PURE_PYTHON"):
        raise ImportError("pure Python requested")
    from websockets.speedups import apply_mask as _apply_mask

    def unmask(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
        """Unmask a client frame's payload (accelerated by ``ignitia_sync[speedups]``)."""
        return _apply_mask(data, mask)

    # The hot paths call the C routine itself, without the wrapper's extra call: a server
    # unmasking, a client masking its own frames.
    _unmask = _mask_payload = _apply_mask

except ImportError:
    unmask = _unmask = _unmask_python  # type: ignore[assignment]  # apply_mask also takes a memoryview
    _mask_payload = _unmask_python  # type: ignore[assignment]

_NO_RSV = RsvBits(False, False, False)
_REASONS = {
    1002: "protocol error",
    1007: "invalid frame payload data",
    1009: "message too big",
}
_DEFLATE_PARAMS = {
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
}


class ProtocolState(Enum):
    """Where the connection is in its life, as the protocol layer sees it."""

    OPEN = "open"
    CLOSING = "closing"  # we sent a Close frame and wait for the peer's
    CLOSED = "closed"  # both Close frames exchanged, or the connection failed or was lost


#: Continuation frames a message may have before each further one costs FRAGMENT_COST.
FREE_FRAGMENTS = 1024
#: What each continuation frame past FREE_FRAGMENTS counts against ``max_message_size``:
#: endless empty or 1-byte fragments then hit the limit (1009) like a big message does.
FRAGMENT_COST = 64


class _SizeGuard(Extension):
    """Refuses a message as soon as a frame header shows it would pass the size limit.

    Lengths are the ones on the wire; a compressed message gets a little slack for
    deflate's worst-case growth, and its inflated size is bounded by ``_BoundedDeflate``.
    Past :data:`FREE_FRAGMENTS` continuation frames, each also costs :data:`FRAGMENT_COST`.
    """

    name = "ignitia-size-guard"

    def __init__(self, max_message_size: int) -> None:
        self._max = max_message_size
        self._limit = max_message_size
        self._wire = 0
        self._fragments = 0

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        if opcode & 0x08:  # control frames have their own 125-byte limit
            return _NO_RSV
        if opcode is not Opcode.CONTINUATION:
            self._wire = self._fragments = 0
            self._limit = self._max + (self._max // 64 + 1024 if rsv.rsv1 else 0)
        else:
            self._fragments += 1
            if self._fragments > FREE_FRAGMENTS:
                self._wire += FRAGMENT_COST
        self._wire += payload_length
        if self._wire > self._limit:
            return CloseReason.MESSAGE_TOO_BIG
        return _NO_RSV


class _BoundedDeflate(PerMessageDeflate):
    """permessage-deflate that never inflates a message past ``max_message_size``.

    wsproto inflates with no ``max_length``, so a small compressed frame could expand to
    gigabytes in one call. Here each call may produce at most the bytes still allowed
    plus one; one byte over fails the message with 1009. Control frames that arrive in
    the middle of a fragmented compressed message leave its state alone.
    """

    def __init__(
        self, max_message_size: int, *, compress_bits: int = 15, mem_level: int = 8, **params: bool | int | None
    ) -> None:
        super().__init__(**params)  # type: ignore[arg-type]
        self._max = max_message_size
        self._compress_bits = compress_bits
        self._mem_level = mem_level
        self._inflated = 0
        self._control = False
        self._enabled = True

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        self._control = bool(opcode & 0x08)
        if self._control:
            return CloseReason.PROTOCOL_ERROR if rsv.rsv1 else _NO_RSV
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if self._control or not self._inbound_compressed:
            return data
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if self._control or not fin:
            return None
        compressed, self._inbound_compressed = self._inbound_compressed, None
        if not compressed:
            return None
        tail = self._inflate(b"\x00\x00\xff\xff")
        self._inflated = 0
        # The peer's compressor resets per message when *its* side has no context takeover.
        if self.server_no_context_takeover if proto.client else self.client_no_context_takeover:
            self._decompressor = None
        return tail

    def shared_key(self) -> tuple[int, int] | None:
        """(window bits, memLevel) when each outgoing message is compressed from scratch."""
        return (self._compress_bits, self._mem_level) if self.server_no_context_takeover else None

    def frame_outbound(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        # Our compressor, made here with our window and memLevel (wsproto would use 15 / 8:
        # about 256 KiB per connection instead of about 32 KiB with 12 / 5).
        if self._compressor is None and self._compressible_opcode(opcode) and opcode is not Opcode.CONTINUATION:
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._compress_bits, self._mem_level
            )
        return super().frame_outbound(proto, opcode, rsv, data, fin)

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        assert self._decompressor is not None
        room = self._max - self._inflated
        try:
            out = self._decompressor.decompress(data, room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self._max:
            return CloseReason.MESSAGE_TOO_BIG
        return out


def negotiate_deflate(
    offers: list[str],
    max_message_size: int,
    *,
    server_window_bits: int = 12,
    client_window_bits: int = 12,
    mem_level: int = 5,
    no_context_takeover: bool = False,
) -> tuple[PerMessageDeflate | None, str | None]:
    """Pick the first acceptable permessage-deflate offer of a client.

    Args:
        offers: the values of the ``Sec-WebSocket-Extensions`` request headers.
        max_message_size: the inflated-size limit the extension enforces.
        server_window_bits: the largest window our compressor uses (9-15); smaller when
            the client asks (``server_max_window_bits``).
        client_window_bits: the window asked of the client's compressor when its offer
            allows it (``client_max_window_bits``); our inflater then needs only that.
        mem_level: zlib's memLevel for our compressor (1-9).
        no_context_takeover: answer ``server_no_context_takeover`` even when the client
            did not ask (RFC 7692 7.1.1.1 allows it): each message is compressed from
            scratch, so a broadcast compresses once for all such peers, and no compressor
            is kept between messages.

    The defaults (12, 12, 5, as websockets') keep a compressed connection near 50 KiB
    after one message each way, where zlib's 15 / 8 cost about 300 KiB.

    Returns:
        The extension and the response header value, or ``(None, None)`` when no offer
        can be accepted. Offers with unknown, repeated or invalid parameters are
        declined, as RFC 7692 asks; so is ``server_max_window_bits=8``, which zlib's raw
        deflate cannot honour.

    Example:
        >>> negotiate_deflate(["permessage-deflate; client_max_window_bits"], 1024)[1]
        'permessage-deflate; client_max_window_bits=12'
    """
    for header in offers:
        for offer in header.split(","):
            name, *raw_params = (part.strip() for part in offer.split(";"))
            if name.lower() != "permessage-deflate":
                continue
            params = _deflate_params(raw_params)
            if params is None:
                continue
            response = ["permessage-deflate"]
            kwargs: dict[str, bool | int | None] = {}
            for flag in ("server_no_context_takeover", "client_no_context_takeover"):
                if flag in params or (flag == "server_no_context_takeover" and no_context_takeover):
                    kwargs[flag] = True
                    response.append(flag)
            compress_bits = server_window_bits
            if "server_max_window_bits" in params:
                asked = params["server_max_window_bits"]
                assert asked is not None
                kwargs["server_max_window_bits"] = asked
                compress_bits = min(asked, server_window_bits)
                response.append(f"server_max_window_bits={asked}")
            if "client_max_window_bits" in params:
                allowed = params["client_max_window_bits"] or 15
                bits = min(allowed, client_window_bits)
                # A client that compresses with 8 bits is inflated with 9 (a larger window reads a
                # smaller one; zlib's raw inflate takes 9 at least).
                kwargs["client_max_window_bits"] = max(bits, 9)
                response.append(f"client_max_window_bits={bits}")
            extension = _BoundedDeflate(max_message_size, compress_bits=compress_bits, mem_level=mem_level, **kwargs)
            return extension, "; ".join(response)
    return None, None


def deflate_from_response(
    raw_params: list[str], max_message_size: int, *, client_window_bits: int = 12, mem_level: int = 5
) -> PerMessageDeflate:
    """A client's permessage-deflate extension, from the parameters of the server's answer.

    Args:
        raw_params: the answer's parameters (``["server_no_context_takeover", ...]``).
        max_message_size: the inflated-size limit the extension enforces.
        client_window_bits: the largest window our compressor uses (9-15); smaller when
            the server asks (``client_max_window_bits``).
        mem_level: zlib's memLevel for our compressor (1-9).

    Raises:
        ValueError: parameters a client must refuse: unknown, repeated or invalid ones,
            ``client_max_window_bits`` without a value, or 8, which zlib cannot compress with.

    Example:
        >>> deflate_from_response(["server_no_context_takeover"], 1024).name
        'permessage-deflate'
    """
    params = _deflate_params(raw_params)
    if params is None or ("client_max_window_bits" in params and params["client_max_window_bits"] is None):
        raise ValueError("invalid permessage-deflate parameters in the response")
    if params.get("client_max_window_bits") == 8:  # RFC 7692 allows it; zlib cannot compress so
        raise ValueError("the server asked for client_max_window_bits=8, which zlib cannot honour")
    compress_bits = min(params.get("client_max_window_bits") or 15, client_window_bits)
    kwargs: dict[str, bool | int | None] = {"client_max_window_bits": compress_bits}
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        if flag in params:
            kwargs[flag] = True
    if params.get("server_max_window_bits"):
        kwargs["server_max_window_bits"] = params["server_max_window_bits"]
    return _BoundedDeflate(max_message_size, compress_bits=compress_bits, mem_level=mem_level, **kwargs)


def _deflate_params(raw_params: list[str]) -> dict[str, int | None] | None:
    params: dict[str, int | None] = {}
    for raw in raw_params:
        key, sep, value = (part.strip() for part in raw.partition("="))
        key = key.lower()
        if key not in _DEFLATE_PARAMS or key in params:
            return None
        if not sep:
            if key == "server_max_window_bits":
                return None
            params[key] = None
            continue
        value = value.strip('"')
        if key.endswith("context_takeover") or not value.isdigit():
            return None
        bits = int(value)
        if not 8 <= bits <= 15 or (key == "server_max_window_bits" and bits == 8):
            return None
        params[key] = bits
    return params


def _frame(opcode: int, payload: bytes, first: int = 0x80) -> bytes:
    """One unmasked, final frame: what a server sends when no extension is active."""
    length = len(payload)
    first |= opcode
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", first, 126, length) + payload
    return struct.pack("!BBQ", first, 127, length) + payload


#: The first two bytes of a client's final, masked frame under 126 bytes, per opcode and length.
_SMALL_MASKED_HEADS = {opcode: tuple(bytes((0x80 | opcode, 0x80 | n)) for n in range(126)) for opcode in (1, 2, 9, 10)}


def _masked_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One final frame from a client: masked with the 4-byte ``key`` (RFC 6455 section 5.3)."""
    length = len(payload)
    if length < 126:
        return _SMALL_MASKED_HEADS[opcode][length] + key + _mask_payload(payload, key)
    first = 0x80 | opcode
    if length < 65536:
        head = struct.pack("!BBH", first, 0xFE, length)
    else:
        head = struct.pack("!BBQ", first, 0xFF, length)
    return head + key + _mask_payload(payload, key)


def encode_shared_frame(message: Message, key: tuple[int, int]) -> bytes:
    """The frame of ``message`` for every peer whose :attr:`WebSocketProtocol.framing_key` is ``key``.

    Such peers negotiated permessage-deflate without server context takeover, so each
    message is compressed from scratch and the bytes are the same for all of them: a
    broadcast compresses once per key, not once per peer.

    Example:
        >>> frame = encode_shared_frame(Message.text("hello"), (12, 5))
        >>> hex(frame[0]), zlib.decompressobj(-15).decompress(frame[2:] + b"\\x00\\x00\\xff\\xff")
        ('0xc1', b'hello')
    """
    bits, mem_level = key
    if type(message) is Text:
        opcode, payload = 1, message.data.encode()
    elif type(message) is Binary:
        opcode, payload = 2, message.data
    else:
        raise TypeError(f"only Text and Binary messages are broadcast, not {type(message).__name__}")
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits, mem_level)
    body = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return _frame(opcode, body[:-4], 0xC0)


def encode_frame(message: Message) -> bytes:
    """The unmasked, uncompressed frame of a data message: what a broadcast shares.

    Example:
        >>> encode_frame(Message.text("hi"))
        b'\\x81\\x02hi'
    """
    if type(message) is Text:
        return _frame(1, message.data.encode())
    if type(message) is Binary:
        return _frame(2, message.data)
    raise TypeError(f"only Text and Binary messages are broadcast, not {type(message).__name__}")


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
        "_extensions",
        "_keys",
        "_mask_bit",
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
        extensions: list[Extension] = [deflate] if deflate is not None else []
        extensions.append(_SizeGuard(max_message_size))
        self._role = ConnectionType.CLIENT if client else ConnectionType.SERVER
        self._extensions = extensions
        # wsproto's connection is made when first needed: most server connections only
        # ever see frames the fast path handles, and every idle connection saves its memory.
        self._wsproto: Connection | None = None if not client and deflate is None else Connection(self._role, extensions)
        self._plain_frames = not client and deflate is None
        # A client without an extension frames its own messages too, each masked with a key
        # from the operating system's CSPRNG (drawn 64 keys at a time).
        self._masking = client and deflate is None
        self._keys = b""
        # A server reads masked frames (a 4-byte key after the length), a client unmasked ones.
        self._masked = not client
        self._mask_bit = 0x80 if self._masked else 0
        self._max_message_size = max_message_size
        # The fast path parses the common frames itself (complete, unfragmented data frames,
        # pings and pongs, no RSV bits, masked from a client, unmasked from a server);
        # anything else goes to wsproto until it is idle again.
        #: True while incoming frames are parsed by the fast path (not by wsproto); only the
        #: protocol sets it.
        self.parsing_fast = True
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self._parts: list[str | bytes] = []
        self.state = ProtocolState.OPEN
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def _conn(self) -> Connection:
        if self._wsproto is None:
            self._wsproto = Connection(self._role, self._extensions)
        return self._wsproto

    @property
    def plain_framing(self) -> bool:
        """True when outgoing frames need no per-connection state (server, no extension)."""
        return self._plain_frames

    @property
    def framing_key(self) -> tuple[int, int] | None:
        """For a server whose deflate has no context takeover: the (window bits, memLevel)
        its frames depend on, shared with every such peer (see :func:`encode_shared_frame`);
        None when its frames need its own compressor (or no compressor: see plain_framing)."""
        for extension in self._extensions:
            if isinstance(extension, _BoundedDeflate) and self._role is ConnectionType.SERVER:
                return extension.shared_key()
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
        end = len(buf)
        pos = 0
        limit = self._max_message_size
        masked = self._masked
        key_size = 4 if masked else 0
        messages: list[Message] = []
        incomplete = False  # a break that waits for more bytes (the others hand over)
        while end - pos >= 2:
            first = buf[pos]
            second = buf[pos + 1]
            length = second & 0x7F
            if second & 0x80 != self._mask_bit or first not in (0x81, 0x82, 0x89, 0x8A):
                break  # wrong masking, fragmented, RSV bits, close, bad opcode: wsproto decides
            if length < 126:
                start = pos + 2 + key_size
            elif first & 0x08:
                break  # a control frame over 125 bytes: wsproto fails it
            elif length == 126:
                if end - pos < 4:
                    incomplete = True
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4 + key_size
                if length < 126:
                    break
            else:
                if end - pos < 10:
                    incomplete = True
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10 + key_size
                if length < 65536 or length >> 63:
                    break
            if length > limit:
                break
            stop = start + length
            if stop > end:
                incomplete = True
                break
            payload = _unmask(buf[start:stop], buf[start - 4 : start]) if masked else bytes(buf[start:stop])
            if first == 0x81:
                try:
                    messages.append(Text(payload.decode()))
                except UnicodeDecodeError:
                    break  # wsproto fails it with 1007
            elif first == 0x82:
                messages.append(Binary(payload))
            elif first == 0x89:
                messages.append(Ping(payload))
            else:
                messages.append(Pong(payload))
            pos = stop
        else:
            incomplete = True
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
                self._parts.append(data)
                if event.message_finished:  # type: ignore[attr-defined]
                    parts, self._parts = self._parts, []
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
            self._outgoing += self._conn.send(event.response())
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
        raise TypeError(f"not a Message: {message!r}")

    def send_text(self, text: str) -> bytes:
        """The bytes of a text message: :meth:`send` of ``Message.text(text)``, without the Message.

        Example:
            >>> WebSocketProtocol().send_text("ok")
            b'\\x81\\x02ok'
        """
        if self.state is not ProtocolState.OPEN:
            raise ConnectionClosed(self.close_code or 1006, self.close_reason)
        if self._plain_frames:
            return _frame(1, text.encode())
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
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def lose(self) -> None:
        """Record that the transport was lost without a closing handshake (code 1006)."""
        self._finish(1006, "")
