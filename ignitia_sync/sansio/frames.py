"""WebSocket frames as bytes: the frame encoders and the masking of RFC 6455 section 5.3.

Plain functions, no state: :func:`encode_frame` makes the unmasked frame a server sends
(a broadcast makes it once for every peer), :func:`encode_shared_frame` the compressed
frame shared by the peers of one framing key, and :func:`unmask` XORs a payload with a
4-byte masking key (masking and unmasking are the same operation). ``_frame``,
``_masked_frame``, ``_unmask`` and ``_mask_payload`` are what
:class:`~ignitia_sync.sansio.protocol.WebSocketProtocol` calls per message.

Example:
    >>> encode_frame(Message.text("Hello"))  # RFC 6455 section 5.7, a single-frame unmasked text message
    b'\\x81\\x05Hello'
    >>> masked = unmask(b"Hello", b"\\x37\\xfa\\x21\\x3d")
    >>> masked.hex(), unmask(masked, b"\\x37\\xfa\\x21\\x3d")
    ('7f9f4d5158', b'Hello')
"""

from __future__ import annotations

import os
import struct
import zlib

from ..message import Binary, Message, Text

__all__ = ["encode_frame", "encode_shared_frame", "unmask"]


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
