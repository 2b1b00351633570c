"""Rooms with positions over Redis, the wire contract (pure: bytes in, bytes out, no I/O).

Each room that keeps positions has two keys in Redis, both under the room channel's own name
as hash tag (so that a cluster keeps them and the channel in one slot):

* ``{PREFIX:room:NAME}:m``, its meta: ``e`` the epoch, ``o`` the last offset, ``b`` the bytes
  its log holds, and ``p:UID`` the last publish sequence number applied for each publishing
  process (a batch sent again after a cut connection is not applied twice); it expires
  ``meta_ttl`` after the room's last message, and with it the epoch;
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
    "EPOCH_NOTICE", "NEW_EPOCH", "POSITION", "POSITIONED", "READ_LOG", "decode_positioned", "new_epoch", "payload_of",
    "positioned_head", "room_keys",
]

#: Kinds: a room message with its position; the notice of a new epoch (the log lost data).
POSITIONED, EPOCH_NOTICE = b"P", b"E"
#: Hex digits of an offset and of a publish sequence number.
_NUMBER = 16


def new_epoch() -> bytes:
    """A new epoch for a room whose log starts (or starts again): 8 random hex digits.

    Example:
        >>> len(new_epoch())
        8
    """
    return os.urandom(4).hex().encode()


def room_keys(channel: bytes) -> tuple[bytes, bytes]:
    """The meta and log keys of the room whose channel is ``channel`` (its hash tag is the channel)."""
    return b"{" + channel + b"}:m", b"{" + channel + b"}:s"


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
#: meta_ttl in ms, 10 "1" to start a new epoch first (the sender dropped messages of the room).
#: Returns {epoch, offset}; offset -1: this sequence number was applied before (sent again).
POSITION = """
local meta, log = KEYS[1], KEYS[2]
local uid = string.sub(ARGV[2], 3)
local epoch = redis.call('HGET', meta, 'e')
if epoch then
  local applied = redis.call('HGET', meta, 'p:' .. uid)
  if applied and tonumber(applied, 16) >= tonumber(ARGV[5], 16) then return {epoch, -1} end
end
if not epoch or ARGV[10] == '1' then
  epoch = ARGV[4]
  redis.call('DEL', meta, log)
  redis.call('HSET', meta, 'e', epoch, 'o', 0, 'b', 0)
end
local offset = redis.call('HINCRBY', meta, 'o', 1)
redis.call('HSET', meta, 'p:' .. uid, ARGV[5])
local envelope = ARGV[2] .. string.char(#epoch) .. epoch .. string.format('%%016x', offset) .. ARGV[5] .. ARGV[3]
local size = #ARGV[3]
local max_messages, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
if max_messages > 0 and max_bytes > 0 and size <= max_bytes then
  if redis.call('EXISTS', log) == 0 then redis.call('HSET', meta, 'b', 0) end
  local now = redis.call('TIME')
  redis.call('XADD', log, offset .. '-0', 'd', envelope, 's', size, 't', now[1] * 1000 + math.floor(now[2] / 1000))
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
"""

#: A new epoch for a room whose messages this process dropped (Redis was unreachable too long),
#: or in which Redis gave a position twice: KEYS as for POSITION; ARGV: 1 the channel, 2 the E
#: envelope's head, 3 the new epoch, 4 meta_ttl ms, 5 "" or the epoch the room must still be in
#: (each process that saw the position given twice asks: the first one's epoch is kept).
#: Every process hears the ``E`` notice and tells the room's members of the gap.
NEW_EPOCH = """
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'e') ~= ARGV[5] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'e', ARGV[3], 'o', 0, 'b', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('%s', ARGV[1], ARGV[2] .. string.char(#ARGV[3]) .. ARGV[3] .. string.rep('0', 32))
return 1
"""

#: A room's position and part of its log, read in one step. KEYS as for POSITION. ARGV: 1 the
#: offset to read after ("-": the last ones), 2 how many at most, 3 max_age in ms, 4 a new epoch
#: and 5 meta_ttl in ms (a room with no epoch yet starts one, at offset 0: a client that joins
#: it has a position to resume from). Returns {epoch, offset, envelope, envelope...}, oldest
#: first; entries older than max_age are left out.
READ_LOG = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then  -- a room with no message yet: its epoch starts now, so that a position exists
  epoch = ARGV[4]
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'b', 0)
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
