"""WebSocket frames as bytes: the frame encoders and the masking of RFC 6455 section 5.3.

Plain functions, no state: :func:`encode_frame` makes the unmasked frame a server sends
(a broadcast makes it once for every peer), :func:`encode_shared_frame` the compressed
frame shared by the peers of one framing key, and :func:`unmask` XORs a payload with a
4-byte masking key (masking and unmasking are the same operation). The per-message work
is :mod:`~ignitia_sync.sansio.framing`'s (the C accelerator or its Python twin).

Example:
    >>> encode_frame(Message.text("Hello"))  # RFC 6455 section 5.7, a single-frame unmasked text message
    b'\\x81\\x05Hello'
    >>> masked = unmask(b"Hello", b"\\x37\\xfa\\x21\\x3d")
    >>> masked.hex(), unmask(masked, b"\\x37\\xfa\\x21\\x3d")
    ('7f9f4d5158', b'Hello')
"""

from __future__ import annotations

import zlib

from ..message import Binary, Message, Text
from . import framing
from .framing import frame as _frame

__all__ = ["encode_frame", "encode_shared_frame", "unmask"]


def unmask(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    """XOR a payload with the repeated 4-byte masking key: unmasking and masking are one operation.

    Done in C by the accelerator when it is built (see :mod:`~ignitia_sync.sansio.framing`),
    else by websockets' routine when ``ignitia_sync[speedups]`` is installed, else in Python.

    Example:
        >>> unmask(b"\\x7f\\x9fMQX", b"\\x37\\xfa\\x21\\x3d")
        b'Hello'
    """
    return framing.unmask(data, mask)


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
        return framing.text_frame(message.data)
    if type(message) is Binary:
        return _frame(2, message.data)
    raise TypeError(f"only Text and Binary messages are broadcast, not {type(message).__name__}")
