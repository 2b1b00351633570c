"""The per-message frame work in Python: the twin of the C accelerator ``_framing``.

Five functions, each the exact behaviour of the C function of the same name (the
differential tests feed both the same bytes): :func:`parse` reads the common frames of a
buffer into messages, :func:`frame` and :func:`text_frame` build a server's unmasked
frames, :func:`masked_frame` a client's, :func:`unmask` XORs a payload with a masking key
(RFC 6455 section 5.3). :mod:`~ignitia_sync.sansio.framing` decides which twin runs.

Unmasking uses websockets' SIMD routine when ``websockets`` is installed (the
``speedups`` extra) and ``IGNITIA_SYNC_PURE_PYTHON`` is not set.

Example:
    >>> out = []
    >>> parse(bytearray(b"\\x81\\x02hi"), False, 1 << 20, out), out
    ((4, True), [Text(data='hi')])
    >>> frame(2, b"ok"), text_frame("ok")
    (b'\\x82\\x02ok', b'\\x81\\x02ok')
"""

from __future__ import annotations

import os
import struct

from ..message import Binary, Message, Ping, Pong, Text

__all__ = ["frame", "masked_frame", "parse", "text_frame", "unmask", "unmask_python"]


def unmask_python(data: bytes | bytearray | memoryview, mask: bytes | bytearray | memoryview) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask``, as one big-integer operation.

    Raises:
        ValueError: ``mask`` is not 4 bytes.

    Example:
        >>> unmask_python(b"\\x00\\x00\\x00\\x00\\x00", b"abcd")
        b'abcda'
    """
    mask = bytes(mask)
    if len(mask) != 4:
        raise ValueError("mask must contain 4 bytes")
    length = memoryview(data).nbytes
    if not length:
        return b""
    key = mask * ((length >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(len(key), "little")[:length]


try:  # websockets' SIMD C routine: about 1 µs per 16 KiB instead of about 45 µs
    if os.environ.get("IGNITIA_SYNC_PURE_PYTHON"):
        raise ImportError("pure Python requested")
    from websockets.speedups import apply_mask as unmask
except ImportError:
    unmask = unmask_python

#: The data and control frames :func:`parse` reads itself: final, no RSV bit (text, binary, ping, pong).
_COMMON = (0x81, 0x82, 0x89, 0x8A)


def parse(buf: bytearray, masked: bool, limit: int, out: list[Message]) -> tuple[int, bool]:
    """Append the messages of the common frames at the start of ``buf`` to ``out``.

    A common frame is final, has no RSV bit, is text, binary, ping or pong, is masked
    exactly when ``masked`` (a server reads a client's masked frames), has a payload of at
    most ``limit`` bytes in its shortest length encoding, and its text is valid UTF-8.
    Parsing stops before the first frame that is not one (wsproto decides on that one) or
    that is not complete yet. ``buf`` is not changed.

    Returns:
        (bytes consumed, incomplete): ``incomplete`` is True when parsing stopped for
        want of bytes (the buffer ended, in a frame or between frames), False when it
        stopped at a frame that is not a common one.

    Example:
        >>> out = []
        >>> parse(bytearray(b"\\x8a\\x00\\x88\\x00"), False, 125, out), out
        ((2, False), [Pong(data=b'')])
    """
    end = len(buf)
    pos = 0
    key_size = 4 if masked else 0
    mask_bit = 0x80 if masked else 0
    while end - pos >= 2:
        first = buf[pos]
        second = buf[pos + 1]
        length = second & 0x7F
        if second & 0x80 != mask_bit or first not in _COMMON:
            return pos, False  # wrong masking, fragmented, RSV bits, close, bad opcode
        if length < 126:
            start = pos + 2 + key_size
        elif first & 0x08:
            return pos, False  # a control frame over 125 bytes
        elif length == 126:
            if end - pos < 4:
                return pos, True
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            start = pos + 4 + key_size
            if length < 126:
                return pos, False  # not the shortest encoding
        else:
            if end - pos < 10:
                return pos, True
            length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            start = pos + 10 + key_size
            if length < 65536 or length >> 63:
                return pos, False
        if length > limit:
            return pos, False
        stop = start + length
        if stop > end:
            return pos, True
        payload = unmask(buf[start:stop], buf[start - 4 : start]) if masked else bytes(buf[start:stop])
        if first == 0x81:
            try:
                out.append(Text(payload.decode()))
            except UnicodeDecodeError:
                return pos, False  # wsproto fails it with 1007
        elif first == 0x82:
            out.append(Binary(payload))
        elif first == 0x89:
            out.append(Ping(payload))
        else:
            out.append(Pong(payload))
        pos = stop
    return pos, True


def frame(opcode: int, payload: bytes | bytearray | memoryview, first: int = 0x80) -> bytes:
    """One unmasked frame: what a server sends when no extension is active.

    ``first`` carries the FIN and RSV bits (0xC0: final and compressed).

    Example:
        >>> frame(9, b"")
        b'\\x89\\x00'
    """
    if type(payload) is memoryview:  # its length in bytes, whatever its items are
        payload = payload.cast("B")
    length = len(payload)
    first |= opcode
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", first, 126, length) + payload
    return struct.pack("!BBQ", first, 127, length) + payload


def text_frame(text: str) -> bytes:
    """The unmasked final frame of a text message.

    Raises:
        UnicodeEncodeError: ``text`` has a lone surrogate (UTF-8 cannot carry it).

    Example:
        >>> text_frame("é")
        b'\\x81\\x02\\xc3\\xa9'
    """
    return frame(1, text.encode())


#: The first two bytes of a client's final, masked frame under 126 bytes, per opcode and length.
_SMALL_MASKED_HEADS = {opcode: tuple(bytes((0x80 | opcode, 0x80 | n)) for n in range(126)) for opcode in (1, 2, 9, 10)}


def masked_frame(opcode: int, payload: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """One final frame from a client: ``payload`` masked with the 4-byte ``key``.

    Example:
        >>> masked_frame(2, b"abcd", b"\\x01\\x01\\x01\\x01")
        b'\\x82\\x84\\x01\\x01\\x01\\x01`cbe'
    """
    if type(payload) is memoryview:  # its length in bytes, whatever its items are
        payload = payload.cast("B")
    length = len(payload)
    if length < 126 and opcode in _SMALL_MASKED_HEADS:
        return _SMALL_MASKED_HEADS[opcode][length] + key + unmask(payload, key)
    first = 0x80 | opcode
    if length < 126:
        head = bytes((first, 0x80 | length))
    elif length < 65536:
        head = struct.pack("!BBH", first, 0xFE, length)
    else:
        head = struct.pack("!BBQ", first, 0xFF, length)
    return head + key + unmask(payload, key)
