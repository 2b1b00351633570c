"""Every private attribute of wsproto that ignitia_sync relies on, named in one place.

wsproto has no public way to ask whether its frame decoder holds a partial frame (the
fast path may bypass wsproto only when it holds none), and its ``PerMessageDeflate``
inflates without a size bound (``deflate._BoundedDeflate`` overrides it, using the
attributes below). ``setup.cfg`` bounds wsproto to the releases tested;
``tests/sansio/test_wsproto_private.py`` fails loudly, naming the attribute, if a
release moves one of them.

Example:
    >>> from wsproto import ConnectionType
    >>> from wsproto.connection import Connection
    >>> decoder_idle(Connection(ConnectionType.SERVER))
    True
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONNECTION_ATTRIBUTES", "DEFLATE_ATTRIBUTES", "decoder_idle", "missing"]

#: Read on ``wsproto.connection.Connection`` (and the objects below it) by :func:`decoder_idle`.
CONNECTION_ATTRIBUTES = ("_proto", "_proto._frame_decoder", "_proto._frame_decoder.buffer",
                         "_proto._frame_decoder.header", "_proto._message_decoder")
#: Used by the subclass of ``wsproto.extensions.PerMessageDeflate`` (once negotiated).
DEFLATE_ATTRIBUTES = ("_inbound_compressed", "_decompressor", "_compressor", "_enabled", "_compressible_opcode")


def decoder_idle(conn: Any) -> bool:
    """True when wsproto's decoder holds no partial frame and no partial message."""
    proto = getattr(conn, "_proto", None)
    decoder = getattr(proto, "_frame_decoder", None)
    buffer = getattr(decoder, "buffer", None)
    return (
        buffer is not None
        and decoder.header is None  # type: ignore[union-attr]
        and len(buffer) == 0
        and getattr(getattr(proto, "_message_decoder", None), "opcode", 1) is None
    )


def missing(obj: Any, names: tuple[str, ...]) -> list[str]:
    """The dotted attribute paths of ``names`` that ``obj`` lacks (empty: all there).

    Example:
        >>> missing(object(), ("_proto",))
        ['_proto']
    """
    absent = []
    for name in names:
        current = obj
        for part in name.split("."):
            if not hasattr(current, part):
                absent.append(name)
                break
            current = getattr(current, part)
    return absent
