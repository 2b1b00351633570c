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

``I`` and ``K`` (later again) are not messages but orders to a process: ``I`` (an inspection,
on the ``all`` channel; ``Iq``, the sender, the reply key's length (two bytes) and the key, then
how long the answers may wait in it, in ms, four bytes) asks every process to push the JSON of
its connections and rooms to that key (:mod:`ignitia_sync.redis.inspection`); ``K`` (on one
process's own channel; ``Kc``, the sender, the connection's own id's length and the id, e.g.
``#17``, then the close code and reason as in ``X``) closes that one connection there. They
have decoders of their own (:func:`decode_inspect`, :func:`decode_close_one`): :func:`decode`
rejects them, so a process older than them rejects (counts) them, as it does ``X``, ``b``, ``d``.

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
import re
import struct

from ..message import Binary, Message, Text, check_revocation_close

__all__ = [
    "check_close_one", "decode", "decode_close_one", "decode_inspect", "encode", "encode_close_one", "encode_disconnect", "encode_inspect",
    "published_at", "traceparent", "with_trace",
]

#: Kinds: a broadcast (room or all), a direct send (to one id), a wake-up (one listener's own).
_BROADCAST, _DIRECT, _WAKE = b"B", b"D", b"W"
#: Kind: a revocation (close the connections identified as an id, in every process).
_DISCONNECT = b"X"
#: Kinds: an inspection request (every process answers), a close of one connection (one process).
_INSPECT, _CLOSE_ONE = b"I", b"K"
#: The type byte of an inspection request.
_REQUEST = b"q"
#: The longest wait for answers an inspection may ask for (ms): how long its reply key may live.
_MAX_REPLY_TTL = 120_000
#: The longest connection id a close may name ("#" and digits).
_MAX_OWN_ID = 24
#: A process id (:func:`_new_uid`) and a connection's own id (``#17``), as a close names them.
_UID_PATTERN = re.compile(rb"[0-9a-f]{16}")
_OWN_ID_PATTERN = re.compile(r"#[0-9]{1,23}")
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
#: An inspection's answer: push ARGV[1] to the reply list (KEYS[1]), which expires ARGV[2] ms
#: later, so that nothing lingers once the asker stopped waiting (or never came).
_ANSWER = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
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


def encode_inspect(sender: bytes, reply_key: bytes, ttl_ms: int) -> bytes:
    """The envelope of an inspection: answer to ``reply_key``, whose answers may wait ``ttl_ms`` there.

    Example:
        >>> envelope = encode_inspect(b"0" * 16, b"{chat}:inspect:ab", 3000)
        >>> envelope
        b'Iq0000000000000000\\x00\\x11{chat}:inspect:ab\\x00\\x00\\x0b\\xb8'
        >>> decode_inspect(envelope)
        (b'0000000000000000', b'{chat}:inspect:ab', 3000)
    """
    if not 0 < ttl_ms <= _MAX_REPLY_TTL:
        raise ValueError(f"an inspection's answers wait 1-{_MAX_REPLY_TTL} ms, not {ttl_ms!r}")
    return _INSPECT + _REQUEST + sender + struct.pack("!H", len(reply_key)) + reply_key + struct.pack("!I", ttl_ms)


def decode_inspect(data: bytes) -> tuple[bytes, bytes, int]:
    """(sender, reply key, ms its answers may wait) of an inspection; ValueError for anything else.

    Example:
        >>> decode_inspect(b"Iq0000000000000000\\x00\\x01k\\x00\\x00\\x00\\x00")
        Traceback (most recent call last):
        ...
        ValueError: an inspection's answers wait 1-120000 ms, not 0
    """
    if data[:2] != _INSPECT + _REQUEST or len(data) < _HEAD + 2:
        raise ValueError("not an inspection envelope")
    sender, rest = data[2:_HEAD], data[_HEAD:]
    (size,) = struct.unpack("!H", rest[:2])
    if len(rest) != 2 + size + 4 or not size:
        raise ValueError("malformed inspection envelope")
    (ttl_ms,) = struct.unpack("!I", rest[2 + size:])
    if not 0 < ttl_ms <= _MAX_REPLY_TTL:
        raise ValueError(f"an inspection's answers wait 1-{_MAX_REPLY_TTL} ms, not {ttl_ms!r}")
    return sender, rest[2:2 + size], ttl_ms


def check_close_one(process: str, id: str, code: int, reason: str) -> None:
    """Raise unless ``process`` is a process id, ``id`` a connection's own id, ``code``/``reason`` a revocation's.

    Raises:
        ValueError: not a process id (16 hex digits), not ``#`` and digits, or what
            :func:`~ignitia_sync.message.check_revocation_close` refuses.
        TypeError: ``process`` or ``id`` not a ``str``.

    Example:
        >>> check_close_one("0123456789abcdef", "#17", 4000, "bye")
        >>> check_close_one("0123456789abcdef", "alice", 4000, "bye")
        Traceback (most recent call last):
        ...
        ValueError: a connection's own id is '#' and digits (as '#17'), not 'alice'
    """
    if not isinstance(process, str) or not isinstance(id, str):
        raise TypeError("a process id and a connection id are str")
    if not _UID_PATTERN.fullmatch(process.encode("utf-8", "replace")):
        raise ValueError(f"a process id is {_UID_SIZE} hex digits (as the inspection lists it), not {process[:40]!r}")
    if not _OWN_ID_PATTERN.fullmatch(id):
        raise ValueError(f"a connection's own id is '#' and digits (as '#17'), not {id[:40]!r}")
    check_revocation_close(code, reason)


def encode_close_one(sender: bytes, id: str, code: int, reason: str) -> bytes:
    """The envelope that closes the connection whose own id is ``id`` (``#17``) in the process it is sent to.

    The caller has checked ``id``, ``code`` and ``reason`` (:func:`check_close_one`).

    Example:
        >>> envelope = encode_close_one(b"0" * 16, "#17", 4000, "bye")
        >>> envelope
        b'Kc0000000000000000\\x00\\x03#17\\x0f\\xa0bye'
        >>> decode_close_one(envelope)
        (b'0000000000000000', '#17', 4000, 'bye')
    """
    name = id.encode()
    return _CLOSE_ONE + _CLOSE + sender + struct.pack("!H", len(name)) + name + struct.pack("!H", code) + reason.encode()


def decode_close_one(data: bytes) -> tuple[bytes, str, int, str]:
    """(sender, own id, code, reason) of a close of one connection; ValueError for anything else.

    Example:
        >>> decode_close_one(b"Kc0000000000000000\\x00\\x05alice\\x03\\xe8")
        Traceback (most recent call last):
        ...
        ValueError: a connection's own id is '#' and digits (as '#17'), not 'alice'
    """
    if data[:2] != _CLOSE_ONE + _CLOSE or len(data) < _HEAD + 2:
        raise ValueError("not a close envelope")
    sender, rest = data[2:_HEAD], data[_HEAD:]
    (size,) = struct.unpack("!H", rest[:2])
    if size > _MAX_OWN_ID or len(rest) < 2 + size + 2:
        raise ValueError("malformed close envelope")
    id = rest[2:2 + size].decode()
    if not _OWN_ID_PATTERN.fullmatch(id):
        raise ValueError(f"a connection's own id is '#' and digits (as '#17'), not {id[:40]!r}")
    (code,) = struct.unpack("!H", rest[2 + size:4 + size])
    reason = rest[4 + size:].decode()
    check_revocation_close(code, reason)
    return sender, id, code, reason


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
        #: An inspection's reply list is this and a random token (it expires by itself).
        self.reply_prefix = f"{{{prefix}}}:inspect:".encode()

    def id_key(self, id: str) -> bytes:
        """The directory entry of application id ``id``."""
        return self.id_prefix + id.encode()

    def wake_prefix(self, uid: bytes) -> str:
        """The start of a shard listener's wake channel (a number follows: one that hashes to its shard)."""
        return f"{self.prefix}:wake:{uid.decode()}:"
