"""Rooms with positions over Redis, the wire contract (pure: bytes in, bytes out, no I/O).

Each room that keeps positions has two keys in Redis, both under the room channel's own name
as hash tag (so that a cluster keeps them and the channel in one slot; sharded, a channel
with a ``}`` has a hash tag of its own, which its keys take instead: :func:`room_keys`):

* ``{PREFIX:room:NAME}:m``, its meta: ``e`` the epoch, ``o`` the last offset, ``b`` the bytes
  its log holds, ``m`` its meta_ttl, and ``p:UID`` the last publish sequence number applied
  for each publishing process (a batch sent again after a cut connection is not applied
  twice), with ``l:UID`` its time, forgotten an hour (at least) after that process's last
  publish there; it expires ``meta_ttl`` after the room's last message, and with it the epoch;
* ``{PREFIX:room:NAME}:s``, its log: a stream whose entry ids are the offsets (``17-0``), each
  holding the envelope as it was published (``d``), its payload size (``s``) and Redis's time
  of the publish in ms (``t``); trimmed to ``max_messages`` and ``max_bytes`` at each publish,
  expired ``max_age`` after the room's last message (entries older than ``max_age`` are not
  read).

One script (:data:`POSITION`) gives a message its position and keeps it and publishes it, in
one step: every process hears the room's messages in the order of their offsets. The
envelope it publishes is ``P``: kind, message type, the sender's uid, the epoch (a length
byte, then ASCII), the offset and the sender's publish sequence number (16 hex digits each),
then the payload. :data:`NEW_EPOCH` starts a new epoch and publishes ``E`` (the same head,
the offset 0, no payload): every process tells the room's members of the gap.

Example:
    >>> envelope = positioned_head(Message.text("hi"), b"0" * 16) + b"e1" + b"hi"  # what Redis completes
    >>> sent = b"Pt" + b"0" * 16 + b"\\x02e1" + b"%016x" % 7 + b"%016x" % 3 + b"hi"
    >>> decode_positioned(sent)
    (b'0000000000000000', Position(epoch='e1', offset=7), 3, Text(data='hi'))
    >>> room_keys(b"chat:room:lobby")
    (b'{chat:room:lobby}:m', b'{chat:room:lobby}:s')
"""

from __future__ import annotations

import os

from ..broadcast.positions import MAX_EPOCH_LENGTH, Position
from ..message import Binary, Message, Text
from .envelope import _BINARY, _HEAD, _TEXT, _UID_SIZE

__all__ = [
    "EPOCH_NOTICE", "KEEP_SEQUENCE_MS", "NEW_EPOCH", "POSITION", "POSITIONED", "READ_LOG", "decode_positioned",
    "hash_tag", "new_epoch", "payload_of", "positioned_head", "room_key_base", "room_keys",
]

#: Kinds: a room message with its position; the notice of a new epoch (the log lost data).
POSITIONED, EPOCH_NOTICE = b"P", b"E"
#: Hex digits of an offset and of a publish sequence number.
_NUMBER = 16
#: A process's last publish sequence number is kept in a room's meta at least this long (ms)
#: after its last publish applied there (longer with a longer meta_ttl): see :data:`POSITION`.
KEEP_SEQUENCE_MS = 3_600_000


def new_epoch() -> bytes:
    """A new epoch for a room whose log starts (or starts again): 8 random hex digits.

    Example:
        >>> len(new_epoch())
        8
    """
    return os.urandom(4).hex().encode()


def hash_tag(name: bytes) -> bytes | None:
    """Redis Cluster's hash tag of a key or shard channel: what its slot is computed from, when not the whole name.

    The bytes between the first ``{`` and the first ``}`` after it, if there are any; else None
    (the whole name counts).

    Example:
        >>> hash_tag(b"a{b{c}d}"), hash_tag(b"a{}b}"), hash_tag(b"lobby")
        (b'b{c', None, None)
    """
    start = name.find(b"{")
    end = name.find(b"}", start + 1) if start >= 0 else -1
    return name[start + 1:end] if end > start + 1 else None


def room_key_base(channel: bytes, sharded: bool = False) -> bytes:
    """What every key of the room whose channel is ``channel`` starts with: in the channel's slot.

    The channel itself as the hash tag (``{CHANNEL}``) when it holds no ``}``: such keys hash
    to the channel's slot. Sharded (Redis Cluster), a channel with a ``}`` has its own hash tag
    (``{``...``}``), which the keys take: ``{TAG}:CHANNEL`` (unique per room, in the channel's
    slot); without one, no key can share its slot. One Redis keeps ``{CHANNEL}`` for any name.

    Raises:
        ValueError: sharded, a channel (prefix and room name) with a ``}`` but no hash tag.

    Example:
        >>> room_key_base(b"chat:room:x{t}y", sharded=True), room_key_base(b"chat:room:lobby")
        (b'{t}:chat:room:x{t}y', b'{chat:room:lobby}')
    """
    if not sharded or b"}" not in channel:
        return b"{" + channel + b"}"
    if (tag := hash_tag(channel)) is not None:
        return b"{" + tag + b"}:" + channel
    raise ValueError(f"sharded Redis cannot keep room state for channel {channel[:80]!r}: a '}}' without a "
                     f"'{{...}}' hash tag before it (rename the room or prefix, or drop its history and presence)")


def room_keys(channel: bytes, sharded: bool = False) -> tuple[bytes, bytes]:
    """The meta and log keys of the room whose channel is ``channel`` (see :func:`room_key_base`).

    Raises:
        ValueError: sharded, a channel (prefix and room name) with a ``}`` but no hash tag.

    Example:
        >>> room_keys(b"chat:room:x{t}y", sharded=True)
        (b'{t}:chat:room:x{t}y:m', b'{t}:chat:room:x{t}y:s')
    """
    base = room_key_base(channel, sharded)
    return base + b":m", base + b":s"


def positioned_head(message: Message, sender: bytes) -> bytes:
    """The first bytes of a ``P`` envelope (kind, type, sender); the script puts the position after them.

    Raises:
        TypeError: ``message`` is neither Text nor Binary.
    """
    if type(message) is Text:
        return POSITIONED + _TEXT + sender
    if type(message) is Binary:
        return POSITIONED + _BINARY + sender
    raise TypeError(f"only Text and Binary messages cross the backplane, not {type(message).__name__}")


def payload_of(message: Message) -> bytes:
    """The bytes a message carries (UTF-8 for a text).

    Example:
        >>> payload_of(Message.text("é"))
        b'\\xc3\\xa9'
    """
    if type(message) is Text:
        return message.data.encode()
    if type(message) is Binary:
        return bytes(message.data)
    raise TypeError(f"only Text and Binary messages cross the backplane, not {type(message).__name__}")


def decode_positioned(data: bytes) -> tuple[bytes, Position, int, Message | None]:
    """(sender, position, its publish sequence number, message) of a ``P`` envelope; None for an ``E``.

    Raises:
        ValueError: not a well-formed ``P`` or ``E`` envelope (or a text not in UTF-8).

    Example:
        >>> decode_positioned(b"Ee" + b"1" * 16 + b"\\x02e2" + b"0" * 32)
        (b'1111111111111111', Position(epoch='e2', offset=0), 0, None)
    """
    kind, type_byte, sender = data[:1], data[1:2], data[2:_HEAD]
    if kind not in (POSITIONED, EPOCH_NOTICE) or len(sender) != _UID_SIZE:
        raise ValueError("not a positioned envelope")
    length = data[_HEAD] if len(data) > _HEAD else 0
    start = _HEAD + 1 + length
    if not 0 < length <= MAX_EPOCH_LENGTH or len(data) < start + 2 * _NUMBER:
        raise ValueError("a positioned envelope too short for its epoch and numbers")
    try:
        epoch = data[_HEAD + 1:start].decode("ascii")
        offset = int(data[start:start + _NUMBER], 16)
        seq = int(data[start + _NUMBER:start + 2 * _NUMBER], 16)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("a positioned envelope with a malformed epoch or number") from None
    payload = data[start + 2 * _NUMBER:]
    if kind == EPOCH_NOTICE:
        if type_byte != b"e" or payload:
            raise ValueError("a malformed epoch notice")
        return sender, Position(epoch, offset), seq, None
    if offset < 1:
        raise ValueError("a positioned message before offset 1")
    if type_byte == _TEXT:
        try:
            return sender, Position(epoch, offset), seq, Message.text(payload.decode())
        except UnicodeDecodeError:
            raise ValueError("a text that is not UTF-8") from None
    if type_byte == _BINARY:
        return sender, Position(epoch, offset), seq, Message.binary(payload)
    raise ValueError(f"unknown message type {type_byte!r}")


#: One room message: its position, its place in the log, its publish (``%s``: PUBLISH or SPUBLISH).
#:
#: KEYS: the room's meta and log. ARGV: 1 the channel, 2 the envelope's head (kind, type,
#: sender uid), 3 the payload, 4 a new epoch (used when the room has none, or with ARGV[10]),
#: 5 the sender's publish sequence number, 6 max_messages, 7 max_bytes, 8 max_age in ms, 9
#: meta_ttl in ms, 10 "1" to start a new epoch first (the sender dropped messages of the room:
#: its log starts again, every process's ``p:UID`` and ``l:UID`` stay, as with :data:`NEW_EPOCH`).
#: Returns {epoch, offset}; offset -1: this sequence number was applied before (sent again).
#:
#: The meta also keeps ``m``, the room's meta_ttl (for :data:`NEW_EPOCH`), ``l:UID`` the time
#: (ms) of each process's last publish applied, and ``w`` when its next sweep is due: a
#: process's ``p:UID`` and ``l:UID`` go once it has had nothing applied for ``meta_ttl`` (at least
#: :data:`KEEP_SEQUENCE_MS`), swept at most once per that time (one HGETALL), so that processes
#: that came and went (an Emitter per task) do not pile up in a busy room's meta. That keeps the
#: applied-once guarantee: a process sends a message again only while it is queued, at most
#: ``max_pending_age`` (60 s by default) after it was first queued, far less than that hour; a
#: process whose number was swept has had nothing applied since, so nothing it sends again was
#: applied. (One process alone in a room kept its number as long before: the meta's expiry.) A
#: ``p:UID`` without ``l:UID`` (written by an older release) is left to the meta's expiry.
POSITION = """
local meta, log = KEYS[1], KEYS[2]
local uid = string.sub(ARGV[2], 3)
local epoch = redis.call('HGET', meta, 'e')
if epoch then
  local applied = redis.call('HGET', meta, 'p:' .. uid)
  if applied and tonumber(applied, 16) >= tonumber(ARGV[5], 16) then return {epoch, -1} end
end
if not epoch or ARGV[10] == '1' then  -- the log starts again; p:UID and l:UID stay (applied once, across epochs)
  epoch = ARGV[4]
  redis.call('DEL', log)
  redis.call('HSET', meta, 'e', epoch, 'o', 0, 'b', 0)
end
local offset = redis.call('HINCRBY', meta, 'o', 1)
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('HSET', meta, 'p:' .. uid, ARGV[5], 'l:' .. uid, now_ms, 'm', ARGV[9])
local keep = math.max(tonumber(ARGV[9]), KEEP_SEQUENCE_MS)
if now_ms >= tonumber(redis.call('HGET', meta, 'w') or 0) then
  local fields = redis.call('HGETALL', meta)
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == 'l:' and tonumber(fields[i + 1]) < now_ms - keep then
      redis.call('HDEL', meta, fields[i], 'p:' .. string.sub(fields[i], 3))
    end
  end
  redis.call('HSET', meta, 'w', now_ms + keep)
end
local envelope = ARGV[2] .. string.char(#epoch) .. epoch .. string.format('%%016x', offset) .. ARGV[5] .. ARGV[3]
local size = #ARGV[3]
local max_messages, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
if max_messages > 0 and max_bytes > 0 and size <= max_bytes then
  if redis.call('EXISTS', log) == 0 then redis.call('HSET', meta, 'b', 0) end
  redis.call('XADD', log, offset .. '-0', 'd', envelope, 's', size, 't', now_ms)
  local held = redis.call('HINCRBY', meta, 'b', size)
  while held > max_bytes or redis.call('XLEN', log) > max_messages do
    local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
    if not oldest then break end
    redis.call('XDEL', log, oldest[1])
    held = redis.call('HINCRBY', meta, 'b', -tonumber(oldest[2][4]))
  end
  redis.call('PEXPIRE', log, ARGV[8])
end
redis.call('PEXPIRE', meta, ARGV[9])
local heard = redis.call('%s', ARGV[1], envelope)
return {epoch, offset, heard}
""".replace("KEEP_SEQUENCE_MS", str(KEEP_SEQUENCE_MS))

#: A new epoch for a room whose messages this process dropped (Redis was unreachable too long),
#: or in which Redis gave a position twice: KEYS as for POSITION; ARGV: 1 the channel, 2 the E
#: envelope's head, 3 the new epoch, 4 meta_ttl ms when the room's own is not known, 5 "" or the
#: epoch the room must still be in (each process that saw the position given twice asks: the
#: first one's epoch is kept). The new epoch keeps the room's meta_ttl (``m``, written by
#: POSITION and READ_LOG), which the caller may not know, and every process's ``p:UID`` and
#: ``l:UID`` (a message applied before the new epoch and sent again is still applied once);
#: only the log and the epoch's fields (``e``, ``o``, ``b``) start again. Every process hears
#: the ``E`` notice and tells the room's members of the gap.
NEW_EPOCH = """
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'e') ~= ARGV[5] then return 0 end
local ttl = redis.call('HGET', KEYS[1], 'm') or ARGV[4]
redis.call('DEL', KEYS[2])  -- the log only: every process's p:UID and l:UID stay (a resend is not applied twice)
redis.call('HSET', KEYS[1], 'e', ARGV[3], 'o', 0, 'b', 0, 'm', ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('%s', ARGV[1], ARGV[2] .. string.char(#ARGV[3]) .. ARGV[3] .. string.rep('0', 32))
return 1
"""

#: A room's position and part of its log, read in one step. KEYS as for POSITION. ARGV: 1 the
#: offset to read after ("-": the last ones), 2 how many at most, 3 max_age in ms, 4 a new epoch
#: and 5 meta_ttl in ms (a room with no epoch yet starts one, at offset 0: a client that joins
#: it, or is given ``Registry.position``, has a position to resume from; with none, what is
#: published before its next join would be missed unnoticed). Returns {epoch, offset,
#: envelope, envelope...}, oldest first; entries older than max_age are left out.
READ_LOG = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then  -- a room with no message yet: its epoch starts now, so that a position exists
  epoch = ARGV[4]
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'b', 0, 'm', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local out = {epoch, tonumber(redis.call('HGET', KEYS[1], 'o'))}
local limit = tonumber(ARGV[2])
if limit < 1 then return out end
local entries
if ARGV[1] == '-' then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', limit)
else
  entries = redis.call('XRANGE', KEYS[2], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', limit)
end
local now = redis.call('TIME')
local oldest = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[3])
local first, last, step = 1, #entries, 1
if ARGV[1] == '-' then first, last, step = #entries, 1, -1 end
for i = first, last, step do
  local fields = entries[i][2]
  if tonumber(fields[6]) >= oldest then out[#out + 1] = fields[2] end
end
return out
"""
