"""The backplane's wire contract: the envelope, the channel and key names, the Lua scripts.

Pure code: bytes in, bytes out; no gevent, no redis-py, no I/O. The servers'
:class:`~ignitia_sync.redis.RedisBackplane` and the :class:`~ignitia_sync.redis.Emitter` of a
process that serves no WebSockets both speak it, so that each one's messages decode in the other.

The envelope is plain bytes, nothing a Redis user could make us execute (no pickle):

* one byte of kind: ``B`` (a broadcast, to a room or to all), ``D`` (a direct send to an id)
  or ``X`` (a revocation: close every connection identified as the id, ``Registry.disconnect``);
* one byte of message type: ``t`` (Text, UTF-8), ``b`` (Binary) or, for ``X`` only, ``c`` (Close);
* the sender's process id (:data:`_UID_SIZE` ASCII bytes), so that a process skips its own
  broadcasts (it delivered them locally already);
* for ``D`` and ``X``: the id's length (two bytes, big-endian) and the id in UTF-8;
* the payload; for ``X``, the close code (two bytes, big-endian) and the reason in UTF-8.

``X`` came later than ``B`` and ``D``, whose bytes did not change: an older process rejects
(counts) a revocation it cannot read, and a newer one decodes everything an older one sends.

``b`` and ``d`` (later still) are ``B`` and ``D`` stamped with their publish time: 8 bytes
after the sender (seconds since the epoch, a big-endian double), for the publish-to-deliver
latency of ``ignitia_sync.metrics``. A backplane sends them only when asked to
(``RedisBackplane(publish_times=True)``), once every process reads them; :func:`decode`
reads both forms as ``B``/``D``, and :func:`published_at` gives the stamp.

``T`` (later again) wraps any of them with the publisher's W3C trace context: ``T``, one
byte of length, the ``traceparent`` (ASCII), then the envelope itself; :func:`decode` reads
the envelope inside, :func:`with_trace` makes one and :func:`traceparent` gives it. A
backplane sends them only when asked to (``RedisBackplane(trace_context=True)``) and a span
is recording; a process older than ``T`` rejects (counts) them, like ``X``, ``b`` and ``d``.

:func:`decode` rejects whatever is not one of these with a :class:`ValueError`.

The directory (which process has which application id) is one key per id,
``{PREFIX}:id:ID``, holding the process's id; it expires a TTL after its process last wrote
it (:data:`_DIRECTORY`), so a process that dies takes its ids with it within that TTL.

Example:
    >>> envelope = encode(_DIRECT, Message.text("hi"), b"0" * 16, "alice")
    >>> envelope
    b'Dt0000000000000000\\x00\\x05alicehi'
    >>> decode(envelope)
    (b'D', b'0000000000000000', 'alice', Text(data='hi'))
    >>> _Names("chat").room_prefix + b"lobby"
    b'chat:room:lobby'
"""

from __future__ import annotations

import os
import struct

from ..message import Binary, Message, Text, check_revocation_close

__all__ = ["decode", "encode", "encode_disconnect", "published_at", "traceparent", "with_trace"]

#: Kinds: a broadcast (room or all), a direct send (to one id), a wake-up (one listener's own).
_BROADCAST, _DIRECT, _WAKE = b"B", b"D", b"W"
#: Kind: a revocation (close the connections identified as an id, in every process).
_DISCONNECT = b"X"
#: Kinds stamped with their publish time (``B`` and ``D``, then :data:`_STAMP` bytes after the sender).
_STAMPED = {b"b": b"B", b"d": b"D"}
#: Kind: another envelope with the publisher's ``traceparent`` in front (length byte, ASCII).
_TRACED = b"T"
#: Length of a publish time: a big-endian double (seconds since the epoch).
_STAMP = 8
#: Message types (``c``: the Close of a revocation).
_TEXT, _BINARY, _CLOSE = b"t", b"b", b"c"
#: Length of a process id (hex digits, ASCII).
_UID_SIZE = 16
#: Length of the fixed head: kind, type, sender.
_HEAD = 2 + _UID_SIZE
#: The longest id an envelope can carry (its length is two bytes).
_MAX_ID = 65535

#: Direct send in one round trip: look the id's entry (KEYS[1]) up, publish ARGV[2] to its
#: process's channel (ARGV[1] and the process id). -1: no process has the id; 0: its process
#: is not subscribed right now (reconnecting, or dead: its entry expires by itself).
#: ``%s`` is PUBLISH, or SPUBLISH in sharded mode (the channel shares the key's hash tag).
_SEND_TO = """
local uid = redis.call('GET', KEYS[1])
if not uid then return -1 end
return redis.call('%s', ARGV[1] .. uid, ARGV[2])
"""
#: The directory's one write: for each id's entry (KEYS[i]), ARGV[2 + i] says what to do for
#: this process (ARGV[1]), with the entry's TTL in ms in ARGV[2]:
#:
#: * ``c``, claim: the entry becomes (or stays) ours, with a fresh TTL, unless another process
#:   has it; 1 if it is ours now, 0 if not (a refresh is a claim of an id we have);
#: * ``t``, take over: the entry becomes ours whoever had it; 1;
#: * ``f``, forget: the entry is deleted if it is still ours (another process may have taken
#:   the id over since); 0.
_DIRECTORY = """
local results = {}
for i, key in ipairs(KEYS) do
  local mode = ARGV[i + 2]
  local owner = redis.call('GET', key)
  if mode == 'f' then
    if owner == ARGV[1] then redis.call('DEL', key) end
    results[i] = 0
  elseif mode == 't' or not owner or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    results[i] = 1
  else
    results[i] = 0
  end
end
return results
"""


def _new_uid() -> bytes:
    """A new process id: :data:`_UID_SIZE` random hex digits.

    Example:
        >>> len(_new_uid()), _new_uid() == _new_uid()
        (16, False)
    """
    return os.urandom(_UID_SIZE // 2).hex().encode()


def encode(
    kind: bytes, message: Message, sender: bytes, id: str | None = None, *, published: float | None = None
) -> bytes:
    """The envelope of a broadcast or direct message (see the module docstring).

    ``published``: stamp it with this publish time (``time.time()``): kind ``b``/``d``.

    Raises:
        TypeError: ``message`` is neither Text nor Binary (control frames never cross).

    Example:
        >>> encode(_BROADCAST, Message.text("hi"), b"0" * 16)
        b'Bt0000000000000000hi'
        >>> encode(_BROADCAST, Message.text("hi"), b"0" * 16, published=1.5)
        b'bt0000000000000000?\\xf8\\x00\\x00\\x00\\x00\\x00\\x00hi'
    """
    if published is not None:
        stamped = encode(kind, message, sender, id)
        return kind.lower() + stamped[1:_HEAD] + struct.pack("!d", published) + stamped[_HEAD:]
    if type(message) is Text:
        type_byte, payload = _TEXT, message.data.encode()
    elif type(message) is Binary:
        type_byte, payload = _BINARY, bytes(message.data)
    else:
        raise TypeError(f"only Text and Binary messages cross the backplane, not {type(message).__name__}")
    if id is None:
        return kind + type_byte + sender + payload
    name = id.encode()
    return kind + type_byte + sender + struct.pack("!H", len(name)) + name + payload


def encode_disconnect(sender: bytes, id: str, code: int, reason: str) -> bytes:
    """The envelope of a revocation: close the connections identified as ``id`` with ``code``, ``reason``.

    The caller has checked ``id`` (the registry) and ``code``/``reason``
    (:func:`~ignitia_sync.message.check_revocation_close`).

    Example:
        >>> envelope = encode_disconnect(b"0" * 16, "alice", 1008, "logged out")
        >>> envelope
        b'Xc0000000000000000\\x00\\x05alice\\x03\\xf0logged out'
        >>> decode(envelope)
        (b'X', b'0000000000000000', 'alice', Close(frame=CloseFrame(code=1008, reason='logged out')))
    """
    name = id.encode()
    return _DISCONNECT + _CLOSE + sender + struct.pack("!H", len(name)) + name + struct.pack("!H", code) + reason.encode()


def decode(data: bytes) -> tuple[bytes, bytes, str | None, Message]:
    """(kind, sender, id or None, message) of an envelope; a revocation's message is a Close.

    Raises:
        ValueError: not one of our envelopes (bad kind, type, length or UTF-8; a revocation
            for no application id or with a close code an application may not send).

    Example:
        >>> decode(b"Bt0000000000000000hi")[3]
        Text(data='hi')
    """
    if data[:1] == _TRACED:
        data = _untraced(data)
    unstamped = _STAMPED.get(data[:1])
    if unstamped is not None:  # b, d: B, D with a publish time (published_at reads it)
        if len(data) < _HEAD + _STAMP:
            raise ValueError("truncated stamped envelope")
        data = unstamped + data[1:_HEAD] + data[_HEAD + _STAMP :]
    if len(data) < _HEAD or data[:1] not in (_BROADCAST, _DIRECT, _DISCONNECT):
        raise ValueError("not an ignitia_sync envelope")
    kind, type_byte, sender, rest = data[:1], data[1:2], data[2:_HEAD], data[_HEAD:]
    id = None
    if kind == _DISCONNECT:
        return kind, sender, *_decode_disconnect(type_byte, rest)
    if kind == _DIRECT:
        if len(rest) < 2:
            raise ValueError("truncated direct envelope")
        (size,) = struct.unpack("!H", rest[:2])
        if len(rest) < 2 + size:
            raise ValueError("truncated direct envelope")
        id, rest = rest[2 : 2 + size].decode(), rest[2 + size :]
    if type_byte == _TEXT:
        return kind, sender, id, Message.text(rest.decode())
    if type_byte == _BINARY:
        return kind, sender, id, Message.binary(rest)
    raise ValueError("unknown message type in envelope")


def published_at(data: bytes) -> float | None:
    """The publish time a stamped envelope carries (``b``, ``d``); None for any other.

    Example:
        >>> published_at(encode(_DIRECT, Message.text("hi"), b"0" * 16, "alice", published=12.25))
        12.25
        >>> published_at(b"Bt0000000000000000hi") is None
        True
    """
    if data[:1] == _TRACED:
        try:
            data = _untraced(data)
        except ValueError:
            return None
    if data[:1] not in _STAMPED or len(data) < _HEAD + _STAMP:
        return None
    (published,) = struct.unpack("!d", data[_HEAD : _HEAD + _STAMP])
    return float(published)


def with_trace(envelope: bytes, traceparent: str) -> bytes:
    """``envelope`` carrying the publisher's W3C ``traceparent``: kind ``T``.

    Raises:
        ValueError: a ``traceparent`` longer than 255 bytes or not ASCII.

    Example:
        >>> traced = with_trace(b"Bt0000000000000000hi", "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
        >>> traced[:2], decode(traced)[3], traceparent(traced)[:6]
        (b'T7', Text(data='hi'), '00-111')
    """
    context = traceparent.encode("ascii")
    if len(context) > 255:
        raise ValueError("traceparent over 255 bytes")
    return _TRACED + bytes((len(context),)) + context + envelope


def traceparent(data: bytes) -> str | None:
    """The ``traceparent`` a ``T`` envelope carries; None for any other (or a malformed one).

    Example:
        >>> traceparent(b"Bt0000000000000000hi") is None
        True
    """
    if data[:1] != _TRACED or len(data) < 2 or len(data) < 2 + data[1]:
        return None
    try:
        return data[2 : 2 + data[1]].decode("ascii")
    except UnicodeDecodeError:
        return None


def _untraced(data: bytes) -> bytes:
    """The envelope inside a ``T`` one; ValueError when truncated or nested.

    Example:
        >>> _untraced(b"T\x01xBt0000000000000000hi")
        b'Bt0000000000000000hi'
    """
    if len(data) < 2 or len(data) < 2 + data[1]:
        raise ValueError("truncated traced envelope")
    inner = data[2 + data[1] :]
    if inner[:1] == _TRACED:
        raise ValueError("a traced envelope inside a traced envelope")
    return inner


def _decode_disconnect(type_byte: bytes, rest: bytes) -> tuple[str, Message]:
    """The id and Close of a revocation's envelope after its head; ValueError for anything else.

    Example:
        >>> _decode_disconnect(b"c", b"\\x00\\x01a\\x03\\xe8")
        ('a', Close(frame=CloseFrame(code=1000, reason='')))
    """
    if type_byte != _CLOSE or len(rest) < 2:
        raise ValueError("malformed revocation envelope")
    (size,) = struct.unpack("!H", rest[:2])
    if len(rest) < 2 + size + 2:
        raise ValueError("truncated revocation envelope")
    id = rest[2 : 2 + size].decode()
    if not id or id.startswith("#"):  # an automatic id names a different connection in every process
        raise ValueError("a revocation names no application id")
    (code,) = struct.unpack("!H", rest[2 + size : 4 + size])
    reason = rest[4 + size :].decode()
    check_revocation_close(code, reason)
    return id, Message.close_with_reason(code, reason)


def _as_message(message: Message | str | bytes) -> Message:
    """``str`` as Text, bytes-like as Binary, a Message as itself (the Emitter's convenience).

    Example:
        >>> _as_message("hi"), _as_message(b"\\x00")
        (Text(data='hi'), Binary(data=b'\\x00'))
    """
    if isinstance(message, str):
        return Message.text(message)
    if isinstance(message, bytes | bytearray | memoryview):
        return Message.binary(bytes(message))
    return message


class _Names:
    """The channel and key names of a prefix (shared by the backplane and the Emitter).

    The directory's keys and the direct channels share the hash tag ``{PREFIX}``: in a cluster
    they live in one slot, so one script can look an id up and publish to its process.

    Example:
        >>> names = _Names("ignitia")
        >>> names.all, names.proc_prefix, names.id_key("alice")
        (b'ignitia:all', b'{ignitia}:proc:', b'{ignitia}:id:alice')
        >>> names.wake_prefix(b"ab")
        'ignitia:wake:ab:'
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        #: Broadcasts to every connection; every process listens.
        self.all = f"{prefix}:all".encode()
        #: A room's channel is this and the room's name.
        self.room_prefix = f"{prefix}:room:".encode()
        #: A process's direct channel is this and its uid.
        self.proc_prefix = f"{{{prefix}}}:proc:".encode()
        #: The directory: one key per application id (this and the id), holding the uid of the
        #: process that has it.
        self.id_prefix = f"{{{prefix}}}:id:".encode()

    def id_key(self, id: str) -> bytes:
        """The directory entry of application id ``id``."""
        return self.id_prefix + id.encode()

    def wake_prefix(self, uid: bytes) -> str:
        """The start of a shard listener's wake channel (a number follows: one that hashes to its shard)."""
        return f"{self.prefix}:wake:{uid.decode()}:"
