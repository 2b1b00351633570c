"""Presence over Redis, the wire contract (pure: keys, the ``U`` envelope, the script; no I/O).

Each room's presence is three keys in the room channel's cluster slot (its positions' key base,
``redis.positions.room_key_base``; ``{PREFIX:room:NAME}`` for most names):

* ``{PREFIX:room:NAME}:pu``: for each process and user (``UID|USER``), how many of that
  process's connections the user has in the room;
* ``{PREFIX:room:NAME}:pt``: for each user, the total over every process;
* ``{PREFIX:room:NAME}:px``: when each ``UID|USER`` entry expires (ms): a process writes its
  entries again every ``presence_ttl / 3`` seconds, so the entries of a process that died
  without cleaning up (SIGKILL, a lost host) are swept at most ``presence_ttl`` seconds later.

One script (:data:`PRESENCE`) sweeps what expired, then sets one process's count for one
user (absolute, so that writing it again changes nothing), and publishes ``U`` on the room's
channel when the user's total goes from 0 to more (``Uj``) or back to 0 (``Ul``): the user,
not each connection, arrives and leaves. ``U``: kind, ``j`` or ``l``, the writer's uid, the
user id in UTF-8.

Example:
    >>> presence_keys(b"chat:room:lobby")[0]
    b'{chat:room:lobby}:pu'
    >>> decode_presence(b"Uj" + b"0" * 16 + b"alice")
    ('alice', True)
"""

from __future__ import annotations

from .envelope import _HEAD
from .positions import room_key_base

__all__ = ["PRESENCE", "PRESENCE_EVENT", "decode_presence", "presence_keys"]

#: Kind: a user arrived in a room (``j``) or left it (``l``), counted over every process.
PRESENCE_EVENT = b"U"


def presence_keys(channel: bytes, sharded: bool = False) -> tuple[bytes, bytes, bytes]:
    """The per-process counts, the totals and the expiries of the room whose channel is ``channel``.

    In the channel's slot, as its positions' keys (``redis.positions.room_key_base``).

    Raises:
        ValueError: sharded, a channel with a ``}`` but no hash tag.
    """
    base = room_key_base(channel, sharded)
    return base + b":pu", base + b":pt", base + b":px"


def decode_presence(data: bytes) -> tuple[str, bool]:
    """(user id, arrived) of a ``U`` envelope.

    Raises:
        ValueError: not a well-formed ``U`` envelope.

    Example:
        >>> decode_presence(b"Ux" + b"0" * 16 + b"alice")
        Traceback (most recent call last):
        ...
        ValueError: a malformed presence event
    """
    if data[:1] != PRESENCE_EVENT or data[1:2] not in (b"j", b"l") or len(data) <= _HEAD:
        raise ValueError("a malformed presence event")
    try:
        return data[_HEAD:].decode(), data[1:2] == b"j"
    except UnicodeDecodeError:
        raise ValueError("a presence event whose user id is not UTF-8") from None


#: KEYS: the room's presence keys (counts, totals, expiries). ARGV: 1 the channel, 2 the
#: writer's uid, 3 the user ("" to only sweep and read), 4 its count in that process, 5 the
#: entry's TTL in ms. Sweeps the expired entries (publishing the departures they make), sets
#: the count, publishes an arrival or a departure. Returns the totals, flat: user, count, ...
#: (``%s`` is PUBLISH or SPUBLISH.)
PRESENCE = """
local counts, totals, expiries = KEYS[1], KEYS[2], KEYS[3]
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
local function change(field, user, new)
  local old = tonumber(redis.call('HGET', counts, field) or '0')
  if new > 0 then
    redis.call('HSET', counts, field, new)
    redis.call('ZADD', expiries, now + tonumber(ARGV[5]), field)
  else
    redis.call('HDEL', counts, field)
    redis.call('ZREM', expiries, field)
  end
  if new == old then return end
  local total = redis.call('HINCRBY', totals, user, new - old)
  if total <= 0 then
    redis.call('HDEL', totals, user)
    if old > 0 then redis.call('%s', ARGV[1], 'Ul' .. string.sub(field, 1, 16) .. user) end
  elseif total == new and old == 0 then
    redis.call('%s', ARGV[1], 'Uj' .. string.sub(field, 1, 16) .. user)
  end
end
for _, field in ipairs(redis.call('ZRANGEBYSCORE', expiries, '-inf', now)) do
  change(field, string.sub(field, 18), 0)
end
if ARGV[3] ~= '' then
  change(ARGV[2] .. '|' .. ARGV[3], ARGV[3], tonumber(ARGV[4]))
end
local keep = 3 * tonumber(ARGV[5])
for _, key in ipairs({counts, totals, expiries}) do redis.call('PEXPIRE', key, keep) end
return redis.call('HGETALL', totals)
"""
