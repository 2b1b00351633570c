"""Publish to a Redis backplane's connections from a process that serves no WebSockets.

A Celery task, a cron job or a view in another process reaches the rooms and the ids of
every server that runs a :class:`~ignitia_sync.redis.RedisBackplane` on the same Redis and
prefix. The calls block (plain redis-py, no greenlets, no monkey-patching needed), but never
forever: every connection has a ``socket_connect_timeout`` and a ``socket_timeout``, so a
stalled or unreachable Redis raises ``redis.TimeoutError`` or ``redis.ConnectionError``
(both ``redis.RedisError``) instead of holding a worker.

Example::

    from ignitia_sync.redis import Emitter

    emitter = Emitter("redis://redis:6379/0", socket_timeout=2.0)
    emitter.broadcast("the report is ready", room="finance")
    emitter.send_to("alice", '{"type": "ping"}')
    emitter.disconnect("mallory", 1008, "banned")
    print(emitter.inspect(timeout=2.0)["processes"])   # every server's connections and rooms
    emitter.close()
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from ..broadcast.positions import DEFAULT_HISTORY, HistoryChoice, RoomPositions
from ..broadcast.registry import _check_application_id
from ..connection.threads import allocate_real_lock
from ..message import Message, check_revocation_close
from .envelope import (
    _BROADCAST,
    _DIRECT,
    _SEND_TO,
    _as_message,
    _Names,
    _new_uid,
    check_close_one,
    encode,
    encode_close_one,
    encode_disconnect,
)
from .inspection import gather
from .positions import POSITION, new_epoch, payload_of, positioned_head, room_keys
from .shards import SENTINEL_SCHEME, sentinel_primary

__all__ = ["Emitter"]


class Emitter:
    """Publish to a backplane's connections from a process that serves no WebSockets.

    For a Celery task, a cron job or a view in another process: blocking calls, no
    greenlets, no monkey-patching needed.

    Args:
        url, prefix, sharded: the same Redis, prefix and mode as the servers'
            :class:`~ignitia_sync.redis.RedisBackplane`.
        socket_timeout: seconds to wait for Redis's answer to a command; longer, and the
            call raises ``redis.TimeoutError`` (a stalled Redis never holds a task forever).
            None waits forever.
        socket_connect_timeout: seconds a connection attempt may take (``redis.TimeoutError``
            or ``redis.ConnectionError`` beyond). None waits forever.
        history: the same as the servers' (``HostSettings.history``): a broadcast to a room
            that keeps positions gets its position and a place in the room's log, as the
            servers' own do.

    A command is never sent twice: one whose connection failed (a timeout, a cut) may have
    run in Redis, and sent again a broadcast would reach every member twice, so the call raises
    instead (whether it was delivered is then unknown). A connection that Redis closed while
    idle (its ``timeout``) is reconnected before the command is written. With ``sharded=True``
    the constructor already connects (to read the slot map).

    Raises:
        ValueError: a timeout that is not positive.

    Example::

        Emitter("redis://redis:6379/0").broadcast("the report is ready", room="finance")
        Emitter("redis://redis:6379/0").send_to("alice", '{"type": "ping"}')
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        prefix: str = "ignitia",
        *,
        sharded: bool = False,
        socket_timeout: float | None = 5.0,
        socket_connect_timeout: float | None = 5.0,
        history: HistoryChoice = DEFAULT_HISTORY,
    ) -> None:
        for name, value in (("socket_timeout", socket_timeout), ("socket_connect_timeout", socket_connect_timeout)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive (or None: no limit), not {value!r}")
        # Never resent (redis-py 6+ would, three times, after a timeout or a cut): it may have run.
        # A pooled connection that Redis closed while idle is reconnected before writing, by the pool.
        retry = Retry(NoBackoff(), 0, supported_errors=(redis.ConnectionError,))
        options: dict[str, Any] = {
            "protocol": 2, "socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout,
            "retry": retry,
        }
        self._client: Any
        if sharded:
            self._client = RedisCluster.from_url(url, **options)
        elif url.startswith(SENTINEL_SCHEME):
            self._client = sentinel_primary(url, None, **options)
        else:
            self._client = redis.Redis.from_url(url, **options)
        self._names = _Names(prefix)
        self._publish = self._client.spublish if sharded else self._client.publish
        self._uid = _new_uid()
        self._send_to_script = _SEND_TO % ("SPUBLISH" if sharded else "PUBLISH")
        self._socket_timeout = socket_timeout
        self._positions = RoomPositions(history)
        self._position_script = POSITION % ("SPUBLISH" if sharded else "PUBLISH")
        self._sharded = sharded
        self._seq = 0  # publish sequence numbers (never resent: each is applied once anyway)
        # A room's script compares a process's numbers (a smaller one than the last applied is
        # "sent again", not published): taking the next one and running its script are one step
        # for every thread. The lock is held across the round trip: threading's own, made at
        # first use in each process (_sequence_lock), so that it is gevent's once the process is
        # monkey-patched (greenlets sharing the Emitter wait for each other cooperatively; a real
        # lock would block the hub the holder waits in). An Emitter made at import in gunicorn's
        # master, before its workers patch, must not keep a real one.
        self._seq_lock: Any = None
        self._seq_lock_pid = os.getpid()  # the process the uid and the sequence are this one's in
        self._making_lock = allocate_real_lock()  # held for an assignment only, never across I/O

    def broadcast(self, message: Message | str | bytes, room: str | None = None) -> int:
        """Send to every connection (or every member of ``room``); returns how many processes heard it.

        Safe from several threads (or greenlets): a room's broadcasts from one Emitter reach
        Redis one at a time.

        Raises:
            redis.RedisError: Redis did not answer within ``socket_timeout`` (``redis.TimeoutError``)
                or cannot be reached (``redis.ConnectionError``).
            ValueError: sharded, a room that keeps positions whose channel (prefix and name) has a
                ``}`` but no ``{...}`` hash tag: its keys cannot share the channel's slot.
        """
        channel = self._names.all if room is None else self._names.room_prefix + room.encode()
        message = _as_message(message)
        history = self._positions.history_for(room) if room is not None else None
        lock = self._sequence_lock()  # first: a forked process takes its own uid
        if history is None:
            return int(self._publish(channel, encode(_BROADCAST, message, self._uid)))
        keys = room_keys(channel, self._sharded)
        with lock:
            self._seq += 1
            _, _, heard = self._client.eval(
                self._position_script, 2, *keys, channel, positioned_head(message, self._uid),
                payload_of(message), new_epoch(), b"%016x" % self._seq, history.max_messages, history.max_bytes,
                max(1, int(history.max_age * 1000)), max(1, int(history.meta_ttl * 1000)), "0")
        return int(heard)

    def _sequence_lock(self) -> Any:
        """The lock of the publish sequence: ``threading.Lock`` as it is now in this process (gevent's once patched).

        In a new process (a worker forked from the master that made the Emitter) the uid and
        the sequence start afresh too: two workers numbering under one uid would each see the
        other's numbers as "applied before" and publish nothing.
        """
        pid = os.getpid()
        if self._seq_lock is None or self._seq_lock_pid != pid:
            with self._making_lock:
                if self._seq_lock_pid != pid:  # made in another process: this one's own identity
                    self._uid, self._seq, self._seq_lock, self._seq_lock_pid = _new_uid(), 0, None, pid
                if self._seq_lock is None:
                    self._seq_lock = threading.Lock()
        return self._seq_lock

    def send_to(self, id: str, message: Message | str | bytes) -> bool:
        """Send to the connection identified as ``id``; False when no process has it.

        Raises:
            redis.RedisError: as :meth:`broadcast`.
        """
        self._sequence_lock()  # this process's own uid
        envelope = encode(_DIRECT, _as_message(message), self._uid, id)
        result = self._client.eval(self._send_to_script, 1, self._names.id_key(id), self._names.proc_prefix, envelope)
        return int(result) > 0

    def disconnect(self, id: str, code: int = 1008, reason: str = "") -> int:
        """Close the connections identified as ``id`` in every server process: a revocation.

        What ``Registry.disconnect`` does in a server, from a process that serves no
        WebSockets (a password change in a Celery task, a ban from an admin script).
        Delivered at most once, like every backplane message. Returns how many processes
        heard it (not how many connections closed: each process that has ``id`` closes it).

        Raises:
            ValueError: a code other than 1000, 1001, 1008 or 3000-4999, a reason over 123
                bytes, or not an application id (empty, starting with ``#``, too long).
            TypeError: ``id`` is not a ``str``.
            redis.RedisError: as :meth:`broadcast`.
        """
        _check_application_id(id)
        check_revocation_close(code, reason)
        self._sequence_lock()  # this process's own uid
        return int(self._publish(self._names.all, encode_disconnect(self._uid, id, code, reason)))

    def inspect(self, timeout: float = 2.0) -> dict[str, Any]:
        """Every live server process's connections and rooms, gathered for at most ``timeout`` seconds.

        Publishes an inspection on ``PREFIX:all`` (Redis says how many processes heard it),
        then waits for their answers (``RedisBackplane.inspect`` does the same from a server).

        Returns:
            ``{"processes": [{"uid", "pid", "host", "connections", "rooms", ...}], "answered": n,
            "expected": m, "partial": n < m}``: a process that did not answer in time (stopped,
            overloaded, or older than inspections) makes it partial.

        Raises:
            ValueError: ``timeout`` not in (0, 60].
            redis.RedisError: as :meth:`broadcast`.
        """
        # each BLPOP ends well within socket_timeout: a long inspection is several of them
        slice = None if self._socket_timeout is None else self._socket_timeout / 2
        self._sequence_lock()  # this process's own uid
        return gather(self._client, self._publish, self._names, self._uid, timeout, slice=slice)

    def close_connection(self, process: str, id: str, code: int = 1008, reason: str = "") -> int:
        """Close the connection ``id`` (``"#17"``) of server process ``process`` (its ``uid``), as :meth:`inspect` lists them.

        Returns how many heard it: 1, or 0 when no such process listens (gone, or reconnecting).

        Raises:
            ValueError: not a process id, not a connection's own id, or a code or reason a
                revocation may not send.
            redis.RedisError: as :meth:`broadcast`.
        """
        check_close_one(process, id, code, reason)
        channel = self._names.proc_prefix + process.encode()
        self._sequence_lock()  # this process's own uid
        return int(self._publish(channel, encode_close_one(self._uid, id, code, reason)))

    def close(self) -> None:
        """Close the connection to Redis."""
        self._client.close()
