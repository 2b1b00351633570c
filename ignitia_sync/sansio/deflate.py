"""permessage-deflate (RFC 7692) for both sides, and the size guard: wsproto extensions with our limits.

:func:`negotiate_deflate` answers a client's offers (server side), :func:`deflate_from_response`
reads a server's answer (client side); both return a ``_BoundedDeflate``, wsproto's
``PerMessageDeflate`` with our window and memLevel that never inflates a message past
``max_message_size`` (1009 instead of a compression bomb). ``_SizeGuard`` refuses a message
as soon as a frame header shows it is too big, compressed or not; every
:class:`~ignitia_sync.sansio.protocol.WebSocketProtocol` has one.

Example:
    >>> extension, answer = negotiate_deflate(["permessage-deflate; server_no_context_takeover"], 1 << 20)
    >>> answer, extension.shared_key()
    ('permessage-deflate; server_no_context_takeover', (12, 5))
    >>> negotiate_deflate(["permessage-deflate; server_max_window_bits=8"], 1 << 20)  # zlib cannot honour 8
    (None, None)
"""

from __future__ import annotations

import zlib

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

__all__ = ["FRAGMENT_COST", "FREE_FRAGMENTS", "deflate_from_response", "negotiate_deflate"]

_NO_RSV = RsvBits(False, False, False)
_DEFLATE_PARAMS = {
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
}


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
    """The parameters of one permessage-deflate offer or answer, by name; None when any is
    unknown, repeated or invalid (RFC 7692 asks to decline such an offer, or fail such an answer)."""
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
