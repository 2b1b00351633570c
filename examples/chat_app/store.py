"""Where the chat keeps what outlives one connection: history, presence, statistics.

Two stores with one interface:

* :class:`LocalStore` (no ``CHAT_REDIS_URL``): this process's memory. Right for one process
  (``ignitia-sync examples.chat_app:app``); with several workers each would have its own
  history and its own idea of who is present (the app logs a warning under gunicorn).
* :class:`RedisStore` (``CHAT_REDIS_URL`` set): one Redis for every worker and host. The
  history is a capped Redis list per room (the last ``HISTORY`` messages, shared by every
  worker, kept across restarts of the app); presence is a sorted set per room with one
  member per open connection (``worker|connection|user``), scored by the time its worker last
  vouched for it, so a worker that dies without cleaning up is forgotten after
  ``PRESENCE_TTL`` seconds; statistics are one hash field per worker.

Presence is per *connection*, shown per *user*: a user with two tabs is listed once, "joins"
with the first tab and "leaves" with the last. Every change returns a version number taken
atomically with the change (a Lua script in Redis), so a client that receives two presence
lists out of order keeps the newer one.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

HISTORY = 50  # messages kept per room
PRESENCE_TTL = 30.0  # seconds a connection stays listed without its worker vouching for it
PRESENCE_REFRESH = 5  # seconds between a worker's vouchings
STATS_TTL = 5.0  # seconds a worker's statistics count without a fresh snapshot


@dataclass(frozen=True)
class PresenceChange:
    """The outcome of one connection entering or leaving a room."""

    users: list[str]  # who is present now, each once, sorted
    version: int  # grows with every change of this room's presence
    changed: bool  # the user appeared (first connection) or disappeared (last one)


class Store(Protocol):
    """What the app needs to keep outside a connection."""

    def add_history(self, room: str, item: dict[str, Any]) -> None: ...
    def history(self, room: str) -> list[dict[str, Any]]: ...
    def enter(self, room: str, conn: str, user: str) -> PresenceChange: ...
    def exit(self, room: str, conn: str, user: str) -> PresenceChange: ...
    def refresh(self, entries: list[tuple[str, str, str]]) -> dict[str, PresenceChange]: ...
    def publish_stats(self, worker: str, snapshot: dict[str, Any]) -> None: ...
    def cluster_stats(self) -> list[dict[str, Any]]: ...


def _users(members: list[str]) -> list[str]:
    return sorted({member.split("|", 2)[2] for member in members})


class LocalStore:
    """History, presence and statistics in this process's memory (one process only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # `flask run` serves each WebSocket in its own thread
        self._history: dict[str, collections.deque[dict[str, Any]]] = collections.defaultdict(
            lambda: collections.deque(maxlen=HISTORY)
        )
        self._present: dict[str, dict[str, str]] = collections.defaultdict(dict)
        self._versions: collections.Counter[str] = collections.Counter()
        self._stats: dict[str, dict[str, Any]] = {}

    def add_history(self, room: str, item: dict[str, Any]) -> None:
        with self._lock:
            self._history[room].append(item)

    def history(self, room: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._history.get(room, ()))

    def _change(self, room: str, conn: str, user: str, entering: bool) -> PresenceChange:
        with self._lock:
            present = self._present[room]
            was_there = user in present.values()
            if entering:
                present[conn] = user
            else:
                present.pop(conn, None)
            users = sorted(set(present.values()))
            if not present:
                del self._present[room]
            self._versions[room] += 1
            return PresenceChange(users, self._versions[room], was_there != (user in users))

    def enter(self, room: str, conn: str, user: str) -> PresenceChange:
        return self._change(room, conn, user, entering=True)

    def exit(self, room: str, conn: str, user: str) -> PresenceChange:
        return self._change(room, conn, user, entering=False)

    def refresh(self, entries: list[tuple[str, str, str]]) -> dict[str, PresenceChange]:
        return {}  # nothing can go stale, and every change was made (and broadcast) here

    def publish_stats(self, worker: str, snapshot: dict[str, Any]) -> None:
        self._stats = {worker: snapshot}

    def cluster_stats(self) -> list[dict[str, Any]]:
        return list(self._stats.values())


# One atomic step of a room's presence: vouch for a member ("touch", only if it is still
# there), drop entries nobody vouched for lately, add or remove a member, bump the version;
# return it with the members before and after. ARGV: op ("add" | "rem" | "touch"), member,
# now, stale-before.
_PRESENCE_SCRIPT = """
local before = redis.call('ZRANGE', KEYS[1], 0, -1)
if ARGV[1] == 'touch' then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
if ARGV[1] == 'add' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
elseif ARGV[1] == 'rem' then
  redis.call('ZREM', KEYS[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], 86400)
local version = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 86400)
return {version, before, redis.call('ZRANGE', KEYS[1], 0, -1)}
"""


class RedisStore:
    """History, presence and statistics in Redis, shared by every worker and host.

    Redis calls block the calling greenlet only: the app runs monkey-patched (``ignitia-sync``
    and gunicorn's gevent workers patch before importing it), so redis-py's sockets are gevent's.
    """

    def __init__(self, url: str, prefix: str = "chat") -> None:
        import redis  # only needed with CHAT_REDIS_URL

        self._redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
        self._prefix = prefix
        self._script = self._redis.register_script(_PRESENCE_SCRIPT)

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def add_history(self, room: str, item: dict[str, Any]) -> None:
        key = self._key("history", room)
        pipe = self._redis.pipeline()
        pipe.rpush(key, json.dumps(item))
        pipe.ltrim(key, -HISTORY, -1)
        pipe.expire(key, 7 * 86400)
        pipe.execute()

    def history(self, room: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self._redis.lrange(self._key("history", room), 0, -1)]

    def _change(self, op: str, room: str, conn: str, user: str) -> PresenceChange:
        now = time.time()
        version, before, after = self._script(
            keys=[self._key("presence", room), self._key("presence-version", room)],
            args=[op, f"{conn}|{user}", now, now - PRESENCE_TTL],
        )
        users = _users(after)
        return PresenceChange(users, int(version), (user in _users(before)) != (user in users))

    def enter(self, room: str, conn: str, user: str) -> PresenceChange:
        return self._change("add", room, conn, user)

    def exit(self, room: str, conn: str, user: str) -> PresenceChange:
        return self._change("rem", room, conn, user)

    def refresh(self, entries: list[tuple[str, str, str]]) -> dict[str, PresenceChange]:
        """Vouch for this worker's open connections; returns each of their rooms' presence now.

        Entries nobody vouched for within ``PRESENCE_TTL`` (a worker that died) are dropped
        on the way. ``XX``: an entry that has left is never added back by a late refresh.
        """
        rooms: dict[str, PresenceChange] = {}
        for room, conn, user in entries:
            rooms[room] = self._change("touch", room, conn, user)
        return rooms

    def publish_stats(self, worker: str, snapshot: dict[str, Any]) -> None:
        self._redis.hset(self._key("stats"), worker, json.dumps(snapshot))

    def cluster_stats(self) -> list[dict[str, Any]]:
        now = time.time()
        fresh: list[tuple[str, dict[str, Any]]] = []
        stale: list[tuple[str, dict[str, Any]]] = []
        for worker, raw in self._redis.hgetall(self._key("stats")).items():
            snapshot = json.loads(raw)
            (fresh if now - snapshot["ts"] < STATS_TTL else stale).append((str(worker), snapshot))
        if stale:  # a stopped worker: it leaves the sums (each snapshot carries its own rates)
            self._redis.hdel(self._key("stats"), *(worker for worker, _ in stale))
        return [snapshot for _, snapshot in fresh]
