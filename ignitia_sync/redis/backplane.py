"""A Redis pub/sub backplane: rooms, broadcasts and direct sends across processes and hosts.

``Server(router, addr, backplane=RedisBackplane("redis://redis:6379/0"))`` (or
``backplane=`` on the WSGI, Flask and Django hosts): ``registry.broadcast(message,
room=...)`` then reaches every member in every process, and ``registry.send_to(id,
message)`` the connection ``identify``'d as ``id`` wherever it lives.

Channels and keys (``prefix`` is ``"ignitia"`` by default):

* ``PREFIX:all``: broadcasts to every connection, and revocations (``Registry.disconnect``:
  close the connections identified as an id); every process listens.
* ``PREFIX:room:NAME``: a room's broadcasts; a process listens only while it has local
  members in the room.
* ``{PREFIX}:proc:UID``: direct sends to one process; the key ``{PREFIX}:id:ID`` (the
  directory) names the process that has application id ``ID`` (one hash tag: one cluster slot).
  Also the close of one of its connections by its own id (``K``, :meth:`RedisBackplane.close_connection`).
* Inspections (``I``, :meth:`RedisBackplane.inspect`) go out on ``PREFIX:all``; every process
  pushes its answer to the list ``{PREFIX}:inspect:TOKEN`` named in the request, which expires
  by itself (``redis/inspection.py``).

The directory is cluster-wide: :meth:`RedisBackplane.claim` gives an id to this process
only if no other live process has it (or when told to take it over). Each process writes
its entries again every ``id_ttl / 3`` seconds and they expire ``id_ttl`` seconds after the
last write, so a process that dies takes its ids with it. What the directory holds for this
process is derived from what the registry told it (``identified``/``forgotten``), never
replayed from a queue: after a reconnect it is written again from that state.

With ``sharded=True`` (Redis Cluster, Redis 7+) the same channels are shard channels
(SPUBLISH/SSUBSCRIBE): a room's traffic goes through the shard that owns its channel.

Delivery is **at most once**, as with every pub/sub backplane: a message published while
Redis is unreachable, or while a process is reconnecting, is lost for the processes that
did not get it. A message is never sent twice: a batch whose connection failed after any of
its bytes may have reached Redis is not sent again (counted in ``given_up``: it reached
every process or none). Such losses are never silent: they are counted
(``stats()["dropped"]``), logged, and ``on_backplane_down``/``on_backplane_up`` are called
when the link changes.

One greenlet owns the subscription connections (``redis/shards.py``; it alone reads and
writes them), another owns the publishing connection; handlers only append to a queue
bounded in messages and in bytes, so a publish never blocks a handler. Both use gevent
sockets, so the backplane cooperates with or without monkey-patching. The state of the link
to Redis is one :class:`~ignitia_sync.redis.link.LinkState` (``redis/link.py``), changed only
through its table of transitions.

The envelope (``redis/envelope.py``) is plain bytes: no pickle, nothing a Redis user could
make us execute; a malformed or oversized message is counted and dropped.

Example:
    >>> backplane = RedisBackplane("redis://127.0.0.1:6379/0", prefix="chat")
    >>> backplane.stats()["up"]
    False
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import redis
from gevent._hub_local import get_hub_if_exists  # no public name; the registry uses it too
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from .._support import tracing
from .._support.backoff import Backoff
from .._support.logs import LogThrottle, safe_url
from ..broadcast.backplane import Deliver, DeliverPositioned, DeliverTo, on_remote_latency
from ..broadcast.positions import DEFAULT_HISTORY, History, Position
from ..connection.threads import Answer, HubRef, allocate_real_lock
from ..exceptions import MessageDropped
from ..message import Message
from ..sansio.http import escape_for_log
from ..settings import ConnectionSettings
from .envelope import (
    _BROADCAST,
    _CLOSE_ONE,
    _DIRECT,
    _DIRECTORY,
    _DISCONNECT,
    _HEAD,
    _INSPECT,
    _MAX_ID,
    _SEND_TO,
    _STAMP,
    _STAMPED,
    _TRACED,
    _WAKE,
    _Names,
    _new_uid,
    check_close_one,
    decode,
    decode_close_one,
    decode_inspect,
    encode,
    encode_close_one,
    encode_disconnect,
    published_at,
    traceparent,
    with_trace,
)
from .inspection import Answerer, Inspectable, gather
from .link import LinkEvent, LinkState, transition
from .positions import (
    EPOCH_NOTICE,
    KEEP_SEQUENCE_MS,
    NEW_EPOCH,
    POSITION,
    POSITIONED,
    READ_LOG,
    decode_positioned,
    new_epoch,
    payload_of,
    positioned_head,
    room_keys,
)
from .presence import PRESENCE, PRESENCE_EVENT, decode_presence, presence_keys
from .shards import (
    SENTINEL_SCHEME,
    _client,
    _cluster,
    _connect_before_writing,
    _Interrupted,
    _open_shards,
    _Sequential,
    _Shard,
    sentinel_primary,
)

__all__ = ["RedisBackplane"]

log = logging.getLogger("ignitia_sync.redis")
#: The longest publish-to-deliver latency believed (seconds); a stamp older than this is not measured.
_LATENCY_CEILING = 3600.0

#: Recent positions remembered per room, to notice Redis giving one to a second message.
_SEEN_WINDOW = 1024

#: Operations per pipeline, and directory entries per script call (bounded work per call in Redis).
_BATCH = 256


class _Claim:
    """A :meth:`RedisBackplane.claim` waiting for Redis's answer."""

    __slots__ = ("answers", "take_over")

    def __init__(self) -> None:
        self.take_over = False
        self.answers: list[Callable[[bool], None]] = []


#: One directory script call: (id, mode, the claim waiting for it or None); mode as in ``_DIRECTORY``.
_Chunk = list[tuple[str, str, "_Claim | None"]]


class RedisBackplane:
    """Rooms, broadcasts and ``send_to`` across processes, over Redis pub/sub.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` and ``unix://`` in a monkey-patched
            process); a password goes in the URL.
        prefix: the start of every channel and key (several apps can share one Redis).
        max_message_size: larger messages are delivered locally but not published (counted
            as dropped); to a room with positions, one is refused to its caller instead
            (``ValueError``: nothing delivered anywhere, the room's epoch unchanged). It is
            also the largest envelope accepted from Redis. Default:
            ConnectionSettings' ``max_message_size``.
        max_pending: messages waiting to be published; beyond, new ones are dropped (counted).
        max_pending_bytes: bytes of the messages waiting to be published or being written to
            Redis (16 MiB by default); a message that would go beyond is dropped (counted), as
            for ``max_pending``. It bounds what a stalled Redis can make a process hold.
        health_check_interval: with no traffic for this long, the listener pings Redis; no
            answer within another interval means a dead link (reconnect).
        reconnect_initial, reconnect_max: reconnect delays: random in [0, d], d doubling
            from ``reconnect_initial`` up to ``reconnect_max`` seconds.
        publish_timeout: a publish that takes longer fails (the link is then down); also the
            longest :meth:`claim` waits for Redis's answer.
        id_ttl: seconds a directory entry (application id -> this process) lives after this
            process last wrote it (30 s by default). Entries are written again every
            ``id_ttl / 3`` seconds, so a process that dies (SIGKILL, a lost host) loses its ids
            within ``id_ttl``, and one cut off from Redis for longer writes them again when back.
        sharded: ``url`` is a node of a Redis Cluster (Redis 7+): sharded pub/sub
            (SPUBLISH/SSUBSCRIBE), so each room's traffic goes through the one shard that owns
            its channel, and the cluster grows with more shards. One listener per shard.
        on_backplane_down, on_backplane_up: called with the backplane when the link to
            Redis is lost and when it is back (both connections up).
        publish_times: stamp each broadcast and ``send_to`` with its publish time (8 bytes
            more), for ``ignitia_sync_backplane_latency_seconds`` in the processes that receive
            it. Off by default: a process older than this option rejects stamped messages, so
            turn it on once every process that receives them runs a version that reads them.
        trace_context: with OpenTelemetry installed and a recording span, each broadcast
            carries its publish span's W3C ``traceparent`` (about 57 bytes more), and the
            receiving processes make a deliver span linked to it. Off by default for the same
            reason as ``publish_times``: during a rolling deploy, an older process rejects
            (counts, drops) these messages; turn it on once every process reads them.
        inspect_max_connections: the most connection records (and rooms) this process puts in
            its answer to an inspection (:meth:`inspect`); beyond, the answer says
            ``"truncated": true`` and gives the totals. A process older than inspections
            rejects (counts) the request, like ``publish_times``' stamps, and is missing from
            the answer (``partial``).
        max_pending_age: seconds a room message with a position may wait for Redis (60 by
            default, under an hour); older, it is dropped and its room starts a new epoch. Keep
            it under the rooms' ``meta_ttl`` too: a room idle for longer loses what Redis knows
            of what was applied, and a message sent again after that would be delivered twice.
        presence_ttl: seconds a process's presence entries live unless written again (every
            ``presence_ttl / 3``): those of a process that died are gone within it.

    Example::

        server = Server(router, ("0.0.0.0", 8000), backplane=RedisBackplane("redis://redis:6379/0"))
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        prefix: str = "ignitia",
        *,
        max_message_size: int = ConnectionSettings().max_message_size,
        max_pending: int = 10_000,
        max_pending_bytes: int = 16 << 20,
        health_check_interval: float = 5.0,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 5.0,
        publish_timeout: float = 5.0,
        id_ttl: float = 30.0,
        sharded: bool = False,
        on_backplane_down: Callable[[RedisBackplane], Any] | None = None,
        on_backplane_up: Callable[[RedisBackplane], Any] | None = None,
        publish_times: bool = False,
        trace_context: bool = False,
        inspect_max_connections: int = 1000,
        max_pending_age: float = 60.0,
        presence_ttl: float = 20.0,
    ) -> None:
        if min(max_message_size, max_pending, max_pending_bytes, health_check_interval) <= 0:
            raise ValueError(
                "max_message_size, max_pending, max_pending_bytes and health_check_interval must be positive"
            )
        if not 0 < reconnect_initial <= reconnect_max:
            raise ValueError("need 0 < reconnect_initial <= reconnect_max")
        if not presence_ttl >= 0.3:
            raise ValueError(f"presence_ttl must be at least 0.3 s, not {presence_ttl!r}")
        if not max_pending_age > 0:
            raise ValueError(f"max_pending_age must be positive seconds, not {max_pending_age!r}")
        if not max_pending_age < KEEP_SEQUENCE_MS / 1000:  # a message sent again must still be known as applied
            raise ValueError(f"max_pending_age must be under {KEEP_SEQUENCE_MS // 1000} s (how long Redis keeps "
                             f"what each process applied), not {max_pending_age!r}")
        if not inspect_max_connections > 0:
            raise ValueError(f"inspect_max_connections must be positive, not {inspect_max_connections!r}")
        if not id_ttl >= 0.1:
            raise ValueError(f"id_ttl must be at least 0.1 s, not {id_ttl!r}")
        self.url = url
        self.prefix = prefix
        self.max_message_size = max_message_size
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.health_check_interval = health_check_interval
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self._backoff = Backoff(first=reconnect_initial, factor=2.0, cap=reconnect_max)
        self.publish_timeout = publish_timeout
        self.id_ttl = id_ttl
        self.on_backplane_down = on_backplane_down
        self.on_backplane_up = on_backplane_up
        self.publish_times = publish_times
        self.trace_context = trace_context
        self.sharded = sharded
        #: This process's id on the backplane (its direct channel is ``{PREFIX}:proc:UID``);
        #: drawn again in :meth:`attach`, so that processes forked after construction (gunicorn
        #: ``--preload``) each have their own.
        self.uid = _new_uid()
        self._names = names = _Names(prefix)
        self._all, self._room_prefix, self._proc_prefix = names.all, names.room_prefix, names.proc_prefix
        self._own = self._proc_prefix + self.uid
        self._publish_command = "spublish" if sharded else "publish"
        self._send_to_script = _SEND_TO % ("SPUBLISH" if sharded else "PUBLISH")
        self._wake_channels: list[bytes] = [self._own]  # one per shard listener
        self._live_shards: list[_Shard] = []  # the connected shard listeners, told of room changes
        self._rooms: set[str] = set()  # rooms with local members: what we want to hear
        # The directory, derived from what the registry told us (never replayed from a queue):
        self._ids: set[str] = set()  # application ids of local connections: entries we want
        self._to_claim: set[str] = set()  # of _ids: entries to write (again): new, after a reconnect, refresh
        self._to_forget: set[str] = set()  # not in _ids: entries to delete if they are still ours
        self._take_over: set[str] = set()  # of _ids: claimed with take_over while Redis could not answer
        self._lost: set[str] = set()  # of _ids: their entries are another process's (counted once)
        self._claims: dict[str, _Claim] = {}  # claim() calls waiting for Redis
        self._next_refresh = 0.0  # when the publisher writes every entry again (monotonic)
        self._queue: collections.deque[tuple[str, tuple[Any, ...]]] = collections.deque()
        self._queued_messages = 0
        self._queued_bytes = 0  # the envelopes in _queue
        self._writing_bytes = 0  # the envelopes of the batch being written
        self._wake_wanted = False  # a shard listener has subscription changes to apply: wake it
        self._wake_publisher = gevent.event.Event()
        self._on_broadcast: Deliver | None = None
        self._on_direct: DeliverTo | None = None
        self._greenlets: list[gevent.Greenlet[Any, Any]] = []
        self._listener: gevent.Greenlet[Any, Any] | None = None
        self._hub: HubRef | None = None  # the hub the greenlets run in: the one owner of what follows
        self._attach_lock = allocate_real_lock()
        #: All of the link's state (redis/link.py), changed only in the hub: by _link_changed and _stop.
        self._link = LinkState.CONNECTING
        self._warn = LogThrottle(log, burst=10, interval=10.0, level=logging.WARNING)
        # "lost Redis" and "Redis is back" have a throttle of their own: the reconnect and drop
        # lines of a long outage must not hold back the line that says it is over
        self._link_log = LogThrottle(log, burst=10, interval=10.0, level=logging.WARNING)
        #: When a connection first failed in the current outage (None: no outage since it was up).
        self._outage_since: float | None = None
        self.counters = collections.Counter[str]()
        #: Answers inspections and closes of one connection, off the listener (redis/inspection.py).
        self._answerer = Answerer(self._connect, self.counters, max_connections=inspect_max_connections)
        self._answerer.uid = self.uid
        # Rooms with positions (broadcast/ordered_rooms.py). Everything below is the hub's.
        self.max_pending_age = max_pending_age
        self._position_script = POSITION % ("SPUBLISH" if sharded else "PUBLISH")
        self._new_epoch_script = NEW_EPOCH % ("SPUBLISH" if sharded else "PUBLISH")
        self._on_positioned: DeliverPositioned | None = None
        self._on_relistened: Callable[[str], None] | None = None
        self._seq = 0  # this process's publish sequence numbers (a resent one is applied once)
        self._tokens: dict[int, Any] = {}  # seq -> what the registry gave, until the message is heard back
        # Rooms to start in a new epoch: None, this process dropped messages of it (the next one
        # starts the epoch, or a notice alone); an epoch, Redis gave a position twice in it (a
        # notice, only if the room is still in that epoch: every process that saw it asks).
        self._new_epochs: dict[str, str | None] = {}
        self._marked: set[str] = set()  # rooms whose new-epoch marker is the last of their ops in _queue
        self._listening: set[bytes] = set()  # channels whose subscription Redis confirmed (this connection)
        # Subscribe/unsubscribe commands sent per channel whose confirmation has not come yet:
        # a channel with one pending does not count as listening (listen_now waits).
        self._unanswered: dict[bytes, int] = {}
        self._listened: set[bytes] = set()  # room channels confirmed before: a new confirmation is a return
        self._listen_waiters: dict[bytes, list[Callable[[bool], None]]] = {}
        # Presence (the registry's presence=True): this process's counts, written absolute, so
        # that writing one again (a refresh, after a reconnect) changes nothing.
        self.presence_ttl = presence_ttl
        self._presence_script = PRESENCE % (("SPUBLISH",) * 2 if sharded else ("PUBLISH",) * 2)
        self._presence_counts: dict[tuple[str, str], int] = {}
        self._presence_dirty: set[tuple[str, str]] = set()
        self._next_presence = 0.0  # when every entry is written again (monotonic)
        self._on_presence: Callable[[str, str, bool], None] | None = None
        # Per room: which message each recent position was given to (a regression check).
        self._seen: dict[str, collections.OrderedDict[tuple[str, int], bytes]] = {}

    # -- the Backplane interface (called by the registry; never blocks, but for claim) -----

    def attach(self, on_broadcast: Deliver, on_direct: DeliverTo, *, threaded: bool = False) -> None:
        """Start the listener and the publisher (in this hub, or in a thread of their own)."""
        with self._attach_lock:
            if self._on_broadcast is not None:
                return
            self._on_broadcast, self._on_direct = on_broadcast, on_direct
        self.uid = _new_uid()  # this process's own, even if the object was made before a fork
        self._own = self._proc_prefix + self.uid
        self._wake_channels = [self._own]
        self._answerer.uid = self.uid
        if threaded:  # a threaded WSGI server: no hub lives as long as the process
            import threading

            started = threading.Event()
            threading.Thread(target=self._run_in_own_hub, args=(started,), name="ignitia-sync-redis",
                             daemon=True).start()
            started.wait(10)
        else:
            self._start_greenlets()

    def _start_greenlets(self) -> None:
        self._hub = HubRef()
        self._listener = gevent.spawn(self._listen)
        self._greenlets = [self._listener, gevent.spawn(self._publish_loop)]

    def _handed_over(self, method: Callable[..., Any], *args: Any) -> bool:
        """From another OS thread (a threaded server): run ``method`` in the backplane's hub instead.

        Every piece of the backplane's state then has one owner, its hub, in every host.
        Returns True when handed over; False when the caller is that hub (or no hub runs the
        backplane yet, or its thread has ended after close()): the caller then runs it.
        """
        hub = self._hub
        if hub is None or hub.owns():
            return False
        return hub.call_soon(method, *args)

    def publish(self, message: Message, room: str | None) -> None:
        """Queue a local broadcast for the other processes (dropped, counted, while Redis is down)."""
        if self._handed_over(self.publish, message, room):
            return
        channel = self._all if room is None else self._room_prefix + room.encode()
        published = time.time() if self.publish_times else None
        envelope = encode(_BROADCAST, message, self.uid, published=published)
        if self.trace_context and tracing.ENABLED:
            context = tracing.publish(room)
            if context is not None:
                envelope = with_trace(envelope, context)
        self._enqueue_message("publish", (channel, envelope))

    def send_to(self, id: str, message: Message) -> bool:
        """Queue a direct send; the process that has ``id`` delivers it (unknown ids are counted)."""
        if self._handed_over(self.send_to, id, message):
            return True
        published = time.time() if self.publish_times else None
        return self._enqueue_message("send_to", (id, encode(_DIRECT, message, self.uid, id, published=published)))

    def send_to_acked(self, id: str, message: Message, ack: Callable[[bool], None]) -> None:
        """:meth:`send_to`, then ``ack(True)`` once Redis handed it to the process that has ``id``
        (``ack(False)``: no process has it). Not called when it could not be sent (the caller times out)."""
        if self._handed_over(self.send_to_acked, id, message, ack):
            return
        published = time.time() if self.publish_times else None
        self._enqueue_message("send_to", (id, encode(_DIRECT, message, self.uid, id, published=published), ack))

    def disconnect(self, id: str, code: int, reason: str) -> bool:
        """Queue a revocation of ``id`` for every other process (``Registry.disconnect`` calls it).

        It goes out on the ``all`` channel like a broadcast, so every process hears it, also one
        that still holds a connection whose id was taken over; each closes its connection
        identified as ``id`` with ``code`` and ``reason``. At most once, like every message:
        while Redis is unreachable it is dropped and counted (``dropped``), and False returned.

        Example:
            >>> RedisBackplane("redis://127.0.0.1:1").disconnect("alice", 1008, "logged out")  # not attached
            True
        """
        if self._handed_over(self.disconnect, id, code, reason):
            return True
        return self._enqueue_message("publish", (self._all, encode_disconnect(self.uid, id, code, reason)))

    # -- rooms with positions (PositionedBackplane) ------------------------------------------

    def attach_positions(self, on_positioned: DeliverPositioned, on_relistened: Callable[[str], None]) -> None:
        """Hand every room message heard (ours too) to ``on_positioned``; a room's return to ``on_relistened``."""
        self._on_positioned, self._on_relistened = on_positioned, on_relistened

    def publish_positioned(self, message: Message, room: str, history: History, token: Any = None) -> bool:
        """Queue a room message: Redis gives its position, keeps it in the room's log, publishes it.

        Unlike :meth:`publish`, it is kept while Redis is unreachable (within ``max_pending``,
        ``max_pending_bytes`` and ``max_pending_age``) and sent once it is back, never applied
        twice. One that cannot be kept is dropped, counted, and the room starts a new epoch
        (every process tells the room's members of the gap), after the room's messages queued
        before it. ``token`` comes back with it; a token with an ``ack`` (a ``publish(...,
        timeout)`` waiting) gets :class:`~ignitia_sync.exceptions.MessageDropped` as soon as
        its message is dropped.

        Raises:
            ValueError: the message's payload is over ``max_message_size``: refused here, in
                the caller, before anything happens (nothing delivered anywhere, no drop
                counted, the room's epoch unchanged).
        """
        payload = payload_of(message)
        if len(payload) > self.max_message_size:
            raise ValueError(f"a message of {len(payload)} bytes is over the backplane's max_message_size "
                             f"({self.max_message_size} bytes)")
        if self.sharded:  # ValueError too: a room whose keys cannot share its channel's slot (positions.room_keys)
            room_keys(self._room_prefix + room.encode(), True)
        if self._handed_over(self.publish_positioned, message, room, history, token):
            return True
        if self._link is LinkState.CLOSED:
            _told_dropped(token, "the backplane is closed")
            return self._lose(room, "the backplane is closed")
        if self._queued_messages >= self.max_pending:
            return self._dropped_in_line(room, token, f"{self.max_pending} messages already wait to be published")
        size = len(payload) + _HEAD
        if self._queued_bytes + self._writing_bytes + size > self.max_pending_bytes:
            return self._dropped_in_line(
                room, token, f"{self._queued_bytes + self._writing_bytes} bytes already wait to be published "
                             f"(max_pending_bytes {self.max_pending_bytes})")
        self._marked.discard(room)  # a drop after this message needs a marker of its own
        self._seq += 1
        if token is not None:
            self._tokens[self._seq] = token
        self._queued_messages += 1
        self._queued_bytes += size
        self._enqueue("position", (room, payload, size, self._seq, history, message, time.monotonic()))
        return True

    def attach_presence(self, on_presence: Callable[[str, str, bool], None]) -> None:
        """Call ``on_presence(room, user, arrived)`` for every presence event heard (rooms with members here)."""
        self._on_presence = on_presence

    def presence_changed(self, room: str, user: str, count: int) -> None:
        """This process now has ``count`` connections of ``user`` in ``room``; written to Redis soon (never blocks)."""
        if self._handed_over(self.presence_changed, room, user, count):
            return
        try:  # sharded, a name whose keys cannot share its channel's slot; text that is not UTF-8
            presence_keys(self._room_prefix + room.encode(), self.sharded)
            user.encode()
        except ValueError as exc:  # (UnicodeEncodeError is one): refused here, never a batch that fails
            why = type(exc).__name__ if isinstance(exc, UnicodeError) else str(exc)  # never the text itself
            self._warn.log("presence of room %s is not shared: %s", escape_for_log(room), why)
            return
        if count:
            self._presence_counts[(room, user)] = count
        else:
            self._presence_counts.pop((room, user), None)
        self._presence_dirty.add((room, user))
        self._wake_publisher.set()

    def read_presence(self, room: str) -> dict[str, int]:
        """Every process's users in ``room`` and their connection counts (blocks the caller for one round trip).

        Raises:
            redis.RedisError, OSError: Redis could not be read.
        """
        channel = self._room_prefix + room.encode()
        client = self._caller_client(self.publish_timeout)
        try:
            flat = client.eval(self._presence_script, 3, *presence_keys(channel, self.sharded), channel, self.uid, "", 0,
                               max(1, int(self.presence_ttl * 1000)))
        finally:
            client.close()
        return {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    def _lose(self, room: str, why: str) -> bool:
        """A room message that will never have a position: counted, and the room starts a new epoch."""
        self._new_epochs[room] = None
        self._wake_publisher.set()
        return self._drop(1, why)

    def _dropped_in_line(self, room: str, token: Any, why: str) -> bool:
        """A room message the full queue cannot take: dropped, counted, its waiting publish() told.

        The room's new epoch is queued here, as a marker after the room's messages already
        queued: they keep their positions in the old epoch and the gap is announced where it
        is. One marker for a run of drops (the queue takes no message of the room meanwhile).
        """
        _told_dropped(token, why)
        if room not in self._marked:
            self._marked.add(room)
            self._enqueue("epoch", (room,))
        return self._drop(1, why)

    def listen_now(self, room: str, timeout: float) -> bool:
        """Wait until Redis confirmed this process's subscription to ``room``; False after ``timeout``.

        The registry calls it in a join, after the room's first member made it :meth:`joined`.
        """
        hub = self._hub
        if hub is None:
            return False
        channel = self._room_prefix + room.encode()
        answer = Answer[bool]()

        def ask() -> None:
            if self._surely_listening(channel):
                answer(True)
            else:
                self._listen_waiters.setdefault(channel, []).append(answer)

        if hub.owns():
            ask()
        elif not hub.call_soon(ask):
            return False
        try:
            return answer.wait(timeout)
        except gevent.Timeout:
            return False

    def _surely_listening(self, channel: bytes) -> bool:
        """Redis confirmed the subscription, and no unsubscribe (nor subscribe) of it is on its way
        or waiting to be sent: a room left and joined again waits for its fresh confirmation."""
        if channel not in self._listening or self._unanswered.get(channel):
            return False
        return not any(shard.pending.get(channel) is False for shard in self._live_shards)

    def read_log(
        self, room: str, after: Position | None, history: History, limit: int
    ) -> tuple[Position | None, list[tuple[Position, Message]]]:
        """The room's position and up to ``limit`` messages of its log after ``after`` (None: the last ones).

        Blocks the caller for one round trip on a connection of its own.

        Raises:
            redis.RedisError, OSError: Redis could not be read.
        """
        meta, log_key = room_keys(self._room_prefix + room.encode(), self.sharded)
        client = self._caller_client(self.publish_timeout)
        try:
            answer = client.eval(READ_LOG, 2, meta, log_key, "-" if after is None else after.offset, limit,
                                 max(1, int(history.max_age * 1000)), new_epoch(), max(1, int(history.meta_ttl * 1000)))
        finally:
            client.close()
        epoch = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
        if not epoch:
            return None, []
        found = []
        for envelope in answer[2:]:
            _, position, _, message = decode_positioned(envelope)
            if message is not None and position.epoch == epoch:
                found.append((position, message))
        return Position(epoch, int(answer[1])), found

    # -- inspection (redis/inspection.py): blocking calls of the caller, answers off the listener --

    def add_inspectable(self, inspected: Inspectable) -> None:
        """Answer inspections with ``inspected``'s connections too (a ``Host`` calls it; held weakly).

        Several hosts of one process that share this backplane are one answer; a host with a
        backplane of its own answers on its own (another ``uid``, the same ``pid``).
        """
        self._answerer.add(inspected)

    def inspect(self, timeout: float = 2.0) -> dict[str, Any]:
        """Every live process's connections and rooms (this one's too), gathered for at most ``timeout`` s.

        Blocks the calling greenlet (or thread), never the hub: one PUBLISH of an inspection
        on ``PREFIX:all``, whose answer says how many processes heard it, then BLPOPs on a
        connection of its own until they all answered or ``timeout`` passed
        (:func:`~ignitia_sync.redis.inspection.gather`). Answers from processes older than
        inspections never come: ``"partial": true``, ``answered`` < ``expected``.

        Raises:
            ValueError: ``timeout`` not in (0, 60].
            redis.RedisError: Redis could not be reached or did not answer.
        """
        client = self._caller_client(timeout + self.publish_timeout)
        try:
            return gather(client, getattr(client, self._publish_command), self._names, self.uid, timeout)
        finally:
            client.close()

    def close_connection(self, process: str, id: str, code: int = 1008, reason: str = "") -> int:
        """Close the connection with own id ``id`` (``"#17"``) of the process ``process`` (its ``uid``).

        Both as :meth:`inspect` lists them. Blocks the calling greenlet for one PUBLISH to
        that process's channel; returns how many heard it (0: no such process listens now).
        At most once, like every message.

        Raises:
            ValueError: not a process id, not a connection's own id, or a code or reason a
                revocation may not send (:func:`~ignitia_sync.message.check_revocation_close`).
            redis.RedisError: as :meth:`inspect`.
        """
        check_close_one(process, id, code, reason)
        client = self._caller_client(self.publish_timeout)
        try:
            channel = self._proc_prefix + process.encode()
            return int(getattr(client, self._publish_command)(channel, encode_close_one(self.uid, id, code, reason)))
        finally:
            client.close()

    def _connect(self, socket_timeout: float | None = None) -> Any:
        """A client of its own (gevent sockets), for the answerer or a caller in a greenlet."""
        return (_cluster if self.sharded else _client)(
            self.url, retries=0, socket_timeout=socket_timeout or self.publish_timeout
        )

    def _caller_client(self, socket_timeout: float) -> Any:
        """The caller's client: on gevent sockets in a thread with a hub; else plain redis-py.

        A request thread of a threaded server (Werkzeug's) has no hub: gevent sockets would
        leave one behind in every such thread, and blocking that thread holds nobody else.
        """
        if get_hub_if_exists() is not None:
            return self._connect(socket_timeout)
        options: dict[str, Any] = {"protocol": 2, "socket_timeout": socket_timeout, "socket_connect_timeout": 5.0,
                                   "retry": Retry(NoBackoff(), 0, supported_errors=(redis.ConnectionError,))}
        if self.url.startswith(SENTINEL_SCHEME):
            return sentinel_primary(self.url, None, **options)
        return (RedisCluster if self.sharded else redis.Redis).from_url(self.url, **options)

    def joined(self, room: str) -> None:
        """Listen to ``room``'s channel (the listener applies it at once)."""
        if not self._handed_over(self.joined, room):
            self._rooms.add(room)
            self._subscriptions_changed(self._room_prefix + room.encode(), True)

    def left(self, room: str) -> None:
        """Stop listening to ``room``'s channel; forget what was kept for it (also while Redis is down)."""
        if not self._handed_over(self.left, room):
            self._rooms.discard(room)
            self._seen.pop(room, None)  # no member here: no window of positions kept for it
            channel = self._room_prefix + room.encode()
            if channel not in self._listening:  # Redis is away: a later join is a first subscription, not a return
                self._listened.discard(channel)  # (else the unsubscribe's confirmation does it, if one is sent:
                # a join back before the listener runs sends none, and the room stays one that returns)
            for answer in self._listen_waiters.pop(channel, ()):  # joins of members gone: no wait for Redis
                answer(False)
            self._subscriptions_changed(channel, False)

    def claim(self, id: str, *, take_over: bool = False) -> bool:
        """Make ``id`` this process's in the cluster-wide directory; False if another live process has it.

        Call it before :meth:`identified` (``Registry.identify`` does), outside any lock: it
        waits for Redis's answer, one round trip, at most ``publish_timeout`` seconds (the
        calling greenlet waits; other greenlets run). With ``take_over=True`` the id becomes
        this process's whoever had it: the other process's connection no longer receives
        direct messages (it counts ``ids_lost``) and should be closed by the application.

        Returns True when the id is now this process's, and also when Redis cannot answer
        (down, or no answer within ``publish_timeout``, or called from a hub callback, which
        cannot wait): the id is then claimed when the link is back, and if another process has
        it by then, this process counts ``ids_lost`` and logs it. Returns False only when a
        live process other than this one has ``id`` (counted in ``ids_refused``). After True,
        call :meth:`identified`, or :meth:`forgotten` if no local connection takes the id after
        all: the entry is this process's until then.

        Raises:
            UnicodeEncodeError: ``id`` is not text Redis can take.

        Example:
            >>> RedisBackplane().claim("alice")  # not attached: nothing to check against
            True
        """
        id.encode()
        hub = self._hub
        if hub is None:
            return True
        answer = Answer[bool]()
        if hub.owns():
            self._claim(id, take_over, answer)
        elif not hub.call_soon(self._claim, id, take_over, answer):
            return True  # the backplane's thread has ended (closed)
        if answer.ready() or gevent.getcurrent() is not gevent.get_hub():
            try:
                return answer.wait(self.publish_timeout)
            except gevent.Timeout:
                pass
        return True

    def identified(self, id: str) -> None:
        """``id`` lives here: its directory entry is written (without taking it from another process).

        Raises:
            UnicodeEncodeError: ``id`` is not text Redis can take (refused here, never a batch that fails).
        """
        id.encode()
        if not self._handed_over(self.identified, id):
            self._ids.add(id)
            self._to_forget.discard(id)
            self._to_claim.add(id)
            self._wake_publisher.set()

    def forgotten(self, id: str) -> None:
        """``id`` no longer lives here: its directory entry is deleted, if it is still this process's."""
        if not self._handed_over(self.forgotten, id):
            self._ids.discard(id)
            self._to_claim.discard(id)
            self._take_over.discard(id)
            self._lost.discard(id)
            self._to_forget.add(id)
            pending = self._claims.pop(id, None)  # a claim whose caller gave up waiting: cancelled
            if pending is not None:
                for answer in pending.answers:
                    answer(True)
            self._wake_publisher.set()

    def stats(self) -> dict[str, Any]:
        """``up``, ``published``, ``received``, ``dropped``, ``unknown_ids``, ``rejected``, ``reconnects``, ...

        Also ``given_up`` (messages of a batch cut after it may have reached Redis: not sent
        again, so in ``dropped`` too), ``ids_refused`` (claims refused: another process has the
        id), ``ids_lost`` (local ids another process has in the directory), ``pending_bytes``,
        ``inspections_answered``/``_refused`` (too many at once)/``_failed`` (Redis failed) and
        ``inspection_closes``/``_missed`` (no open connection had the id) (:meth:`inspect`).

        Example:
            >>> sorted(RedisBackplane().stats())[:3]
            ['dropped', 'given_up', 'ids']
        """
        return {
            "kind": "redis", "process": self.uid.decode(), "up": self._link.up, "pending": self._queued_messages,
            "pending_bytes": self._queued_bytes + self._writing_bytes, "rooms": len(self._rooms), "ids": len(self._ids),
            **{name: self.counters[name] for name in
               ("published", "received", "dropped", "unknown_ids", "rejected", "reconnects", "given_up", "regressions",
                "ids_refused", "ids_lost", "inspections_answered", "inspections_refused", "inspections_failed",
                "inspection_closes", "inspection_closes_missed")},
        }

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued and take this process's ids out of the directory, then stop.

        Waits at most ``timeout`` seconds for that when called from a greenlet of the
        backplane's hub (from a hub callback or another thread it returns at once and the
        publisher finishes by itself); idempotent. Publishes after this are dropped and counted,
        and ``stats()["up"]`` is False.
        """
        if self._on_broadcast is None:  # never attached: no greenlet runs, nothing to send
            self._link = transition(self._link, LinkEvent.CLOSE)
            return
        if self._link is LinkState.CLOSED or self._handed_over(self._stop):
            return
        self._stop()
        publisher = self._greenlets[1] if len(self._greenlets) > 1 else None
        current = gevent.getcurrent()
        if publisher is None or current is publisher or current is gevent.get_hub():
            return  # in a hub callback (a signal handler): the publisher finishes by itself
        publisher.join(timeout)
        gevent.killall(self._greenlets, block=False)

    def _stop(self) -> None:
        """In the backplane's hub: no new publishes; forget our ids, then stop the publisher."""
        if self._link is LinkState.CLOSED:
            return  # closed from two threads at once
        self._link = transition(self._link, LinkEvent.CLOSE)  # no "lost Redis", no callback: we left
        self._settle_claims()
        self._to_forget |= self._ids
        self._ids.clear()
        self._to_claim.clear()
        self._take_over.clear()
        self._enqueue("stop", ())
        if self._listener is not None:
            self._listener.kill(block=False)

    # -- queueing --------------------------------------------------------------------------

    def _enqueue_message(self, op: str, args: tuple[Any, ...]) -> bool:
        if self._link is LinkState.CLOSED:
            return self._drop(1, "the backplane is closed")
        envelope_size = len(args[1])
        inner = args[1] if args[1][:1] != _TRACED else args[1][2 + args[1][1]:]
        size = len(inner) - _HEAD - (_STAMP if inner[:1] in _STAMPED else 0)
        if size > self.max_message_size:
            return self._drop(1, f"message of {size} bytes is over max_message_size")
        if self._link.drops:
            return self._drop(1, "Redis is unreachable")
        if self._queued_messages >= self.max_pending:
            return self._drop(1, f"{self.max_pending} messages already wait to be published")
        if self._queued_bytes + self._writing_bytes + envelope_size > self.max_pending_bytes:
            return self._drop(1, f"{self._queued_bytes + self._writing_bytes} bytes already wait to be published "
                                 f"(max_pending_bytes {self.max_pending_bytes})")
        self._queued_messages += 1
        self._queued_bytes += envelope_size
        self._enqueue(op, args)
        return True

    def _enqueue(self, op: str, args: tuple[Any, ...]) -> None:
        self._queue.append((op, args))
        self._wake_publisher.set()

    def _drop(self, count: int, why: str) -> bool:
        self.counters["dropped"] += count
        self._warn.log("backplane: dropped %d message(s): %s (%d dropped so far)", count, why, self.counters["dropped"])
        return False

    def _subscriptions_changed(self, channel: bytes, wanted: bool) -> None:
        """Tell the shard that owns ``channel``: only the change, not the whole set, is applied."""
        told = False
        for shard in self._live_shards:
            if shard.owns(channel):
                shard.pending[channel] = wanted
                told = True
        if told:  # each shard listener wakes when it hears its wake channel (sent by the publisher)
            self._wake_wanted = True
            self._wake_publisher.set()

    # -- the directory: claims ------------------------------------------------------------------

    def _claim(self, id: str, take_over: bool, answer: Callable[[bool], None]) -> None:
        """In the backplane's hub: ask Redis for ``id`` in the publisher's next batch; ``answer`` the outcome."""
        if self._link is LinkState.CLOSED or self._link.drops:
            if take_over:
                self._take_over.add(id)  # when it is identified, its entry is written by take-over
            answer(True)  # cannot be checked now: checked when the link is back
            return
        pending = self._claims.get(id)
        if pending is None:
            pending = self._claims[id] = _Claim()
        pending.take_over = pending.take_over or take_over
        pending.answers.append(answer)
        self._to_forget.discard(id)  # the claim writes the entry: an older forget is superseded
        self._wake_publisher.set()

    def _settle_claims(self) -> None:
        """Answer the claims Redis will not answer now (the link is down or closed): True, unchecked."""
        claims, self._claims = self._claims, {}
        for id, pending in claims.items():
            if pending.take_over:
                self._take_over.add(id)
            if id not in self._ids:
                self._to_forget.add(id)  # written or not: deleted unless the registry identifies it
            for answer in pending.answers:
                answer(True)

    # -- up and down -------------------------------------------------------------------------

    def _link_changed(self, event: LinkEvent) -> None:
        """Move the link's state (redis/link.py); log and call back when it comes up or goes down."""
        was_up = self._link.up
        self._link = transition(self._link, event)
        if self._link.drops:
            self._settle_claims()
            if self._outage_since is None:
                self._outage_since = time.monotonic()
        up = self._link.up
        if up == was_up:
            return
        if up and self._outage_since is not None:  # at the outage's level: the log says it is over
            self._link_log.log("backplane: Redis is back (%s) after %.1fs; broadcasts cross processes again",
                               safe_url(self.url), time.monotonic() - self._outage_since)
            self._outage_since = None
        elif up:
            log.info("backplane: connected to Redis (%s)", safe_url(self.url))
        else:
            self._link_log.log("backplane: lost Redis (%s); broadcasts stay local until it is back", safe_url(self.url))
        callback = self.on_backplane_up if up else self.on_backplane_down
        if callback is not None:
            try:
                callback(self)
            except Exception:
                log.exception("backplane: %s callback failed", "on_backplane_up" if up else "on_backplane_down")

    def _pause(self, attempt: int) -> None:
        """Full jitter: random in [0, min(max, initial * 2**attempt)]."""
        gevent.sleep(self._backoff.delay(attempt))

    def _run_in_own_hub(self, started: Any) -> None:
        self._start_greenlets()
        started.set()
        gevent.joinall(self._greenlets)

    # -- the listeners: one per shard, each the one owner of its subscription connection -----

    def _channels(self) -> set[bytes]:
        return {self._all, self._own, *(self._room_prefix + room.encode() for room in self._rooms)}

    def _listen(self) -> None:
        """Supervise the shard listeners: (re)connect all of them when one fails."""
        attempt = 0
        failed = False
        while self._link is not LinkState.CLOSED:
            shards: list[_Shard] = []
            listeners: list[gevent.Greenlet[Any, Any]] = []
            connected_at = time.monotonic()
            self._live_shards = []
            try:
                shards = _open_shards(self.url, sharded=self.sharded, own=self._own,
                                      wake_prefix=self._names.wake_prefix(self.uid))
                for shard in shards:  # subscribed here, then each handed to its greenlet
                    self._live_shards.append(shard)  # before the snapshot: no change falls in between
                    shard.start(self._channels())
                    for channel in shard.subscribed:  # one confirmation each to come
                        self._unanswered[channel] = self._unanswered.get(channel, 0) + 1
                self._wake_channels = [shard.wake for shard in shards]
                if failed:
                    self.counters["reconnects"] += 1
                # The ids go into the directory only now that this process hears its own channel
                # (and again after a reconnect: Redis may have restarted empty, or the entries expired).
                self._to_claim |= self._ids
                self._wake_publisher.set()
                self._link_changed(LinkEvent.LISTENER_UP)
                listeners = [gevent.spawn(self._listen_shard, shard) for shard in shards]
                for ended in gevent.joinall(listeners, count=1):
                    raise ended.value if isinstance(ended.value, Exception) else redis.ConnectionError("listener ended")
            except Exception as exc:  # a Redis or network error; anything else is logged in full
                self._not_listening()
                self._link_changed(LinkEvent.LISTENER_LOST)
                if isinstance(exc, redis.RedisError | OSError):
                    self._warn.log("backplane: subscription lost (%s); reconnecting", escape_for_log(str(exc)))
                else:
                    log.exception("backplane: listener failed; reconnecting")
                gevent.killall(listeners)
                failed = True
                if time.monotonic() - connected_at > self.reconnect_max:
                    attempt = 0  # it had been up for a while: start the backoff again (no flapping storm)
                self._pause(attempt)
                attempt += 1
            finally:
                gevent.killall(listeners)
                for shard in shards:
                    shard.close()

    def _listen_shard(self, shard: _Shard) -> Exception | None:
        """Read one shard's messages; returns what broke the link (the supervisor reconnects)."""
        try:
            self._read_shard(shard)
        except (redis.RedisError, OSError) as exc:
            return exc
        return None

    def _read_shard(self, shard: _Shard) -> None:
        """Apply subscription changes between reads; ping after silence."""
        pinged = False
        while self._link is not LinkState.CLOSED:
            if shard.pending:
                self._update(shard)
            message = shard.pubsub.get_message(timeout=self.health_check_interval)
            if message is None:
                if pinged:
                    raise redis.ConnectionError(f"no answer from Redis in {self.health_check_interval:g} s")
                shard.pubsub.ping()
                pinged = True
                continue
            pinged = False
            if message["type"] == shard.kind:
                self._hear(message["channel"], message["data"])
            elif message["type"] in ("subscribe", "ssubscribe"):
                if self._answered(message["channel"]):  # else an unsubscribe follows: not listening yet
                    self._now_listening(message["channel"])
            elif message["type"] in ("unsubscribe", "sunsubscribe"):
                self._answered(message["channel"])
                self._listening.discard(message["channel"])
                self._listened.discard(message["channel"])
            if message["type"] == "sunsubscribe" and not shard.confirm_unsubscribe(message["channel"]):
                raise redis.ConnectionError("the cluster moved a channel's slot")  # resubscribe everywhere

    def _update(self, shard: _Shard) -> None:
        """Apply the shard's subscription changes; count the commands sent, one confirmation each to come."""
        changed = list(shard.pending)
        before = {channel for channel in changed if channel in shard.subscribed}
        shard.update()
        for channel in changed:
            if (channel in before) != (channel in shard.subscribed):  # a SUBSCRIBE or an UNSUBSCRIBE was sent
                self._unanswered[channel] = self._unanswered.get(channel, 0) + 1

    def _answered(self, channel: bytes) -> bool:
        """Redis confirmed a (un)subscription of ``channel``: True when no other command of it waits for its own."""
        left = self._unanswered.pop(channel, 0) - 1
        if left > 0:
            self._unanswered[channel] = left
        return left <= 0

    def _hear(self, channel: bytes, data: bytes) -> None:
        if data[:1] == _TRACED:  # a broadcast with its publisher's trace context (trace_context=True)
            context = traceparent(data)
            inner = data[2 + data[1]:] if context is not None else b""
            if context is not None and inner[:1] != _TRACED:  # else: rejected below, by decode()
                if inner[2:_HEAD] != self.uid:  # not our own broadcast
                    room = channel[len(self._room_prefix):].decode() if channel.startswith(self._room_prefix) else None
                    tracing.deliver(context, room, lambda: self._hear(channel, inner))
                return
        if data[:1] == _INSPECT or data[:1] == _CLOSE_ONE:  # our own too: this process answers as any other
            self._ordered(channel, data)
            return
        if data[:1] == POSITIONED or data[:1] == EPOCH_NOTICE:  # our own too: delivered here when heard
            self._hear_positioned(channel, data)
            return
        if data[:1] == PRESENCE_EVENT:  # our own too: the event counts every process
            self._hear_presence(channel, data)
            return
        if data == _WAKE or data[2:_HEAD] == self.uid:
            return  # a wake-up, or our own broadcast (delivered locally already)
        try:
            if len(data) > self.max_message_size + _HEAD + _STAMP + 2 + _MAX_ID + 2 + 255:
                raise ValueError("over max_message_size")
            kind, _, id, message = decode(data)
        except ValueError as exc:  # not ours, malformed, not UTF-8: never delivered
            self.counters["rejected"] += 1
            self._warn.log("backplane: rejected a message on %s: %s", escape_for_log(channel.decode("latin-1")), exc)
            return
        self.counters["received"] += 1
        assert self._on_broadcast is not None and self._on_direct is not None
        if kind == _DIRECT or kind == _DISCONNECT:  # a revocation's message is its Close
            assert id is not None
            self._on_direct(id, message)
        elif channel == self._all:
            self._on_broadcast(message, None)
        elif channel.startswith(self._room_prefix):
            self._on_broadcast(message, channel[len(self._room_prefix):].decode())
        if on_remote_latency:
            published = published_at(data)
            if published is not None and math.isfinite(published):
                latency = max(0.0, time.time() - published)  # clocks of two machines: never below 0
                if latency <= _LATENCY_CEILING:  # a garbage stamp would poison the histogram's sum for good
                    for hook in on_remote_latency:
                        hook(latency)

    def _hear_positioned(self, channel: bytes, data: bytes) -> None:
        """A room message with its position (or a new epoch's notice): to the registry, which orders them."""
        try:
            if not channel.startswith(self._room_prefix):
                raise ValueError("a positioned message on another channel than a room's")
            if len(data) > self.max_message_size + _HEAD + 1 + 255 + 32:
                raise ValueError("over max_message_size")
            sender, position, seq, message = decode_positioned(data)
            room = channel[len(self._room_prefix):].decode()
        except ValueError as exc:
            self.counters["rejected"] += 1
            self._warn.log("backplane: rejected a message on %s: %s", escape_for_log(channel.decode("latin-1")), exc)
            return
        self.counters["received"] += 1
        if message is not None and not self._same_as_before(room, position, sender, seq):
            return
        token = self._tokens.pop(seq, None) if sender == self.uid else None
        if self._on_positioned is not None:
            self._on_positioned(room, position, message, token)

    def _check_positions(self, client: redis.Redis | RedisCluster) -> None:
        """After a reconnect: a room whose log is behind the last position heard here (Redis came
        back from a copy a moment old: ``appendfsync everysec`` after a crash) starts a new epoch
        before any new message is given a position it already gave."""
        heard = [(room, next(reversed(seen))) for room, seen in self._seen.items() if seen]
        for room, (epoch, offset) in heard:
            meta = room_keys(self._room_prefix + room.encode(), self.sharded)[0]
            answer: list[Any] = client.hmget(meta, "e", "o")
            now_epoch, now_offset = answer
            if now_epoch is not None and now_epoch.decode() == epoch and int(now_offset or 0) < offset:
                self.counters["regressions"] += 1
                self._link_log.log("backplane: room %s's log went back to %s:%d in Redis, behind %d heard here (Redis "
                                   "lost its latest writes); the room starts a new epoch",
                                   escape_for_log(repr(room[:60])), epoch, int(now_offset or 0), offset)
                seen = self._seen.get(room)  # the room may have been left meanwhile (hmget switched)
                if seen is not None:
                    seen.clear()
                self._new_epochs.setdefault(room, epoch)

    def _same_as_before(self, room: str, position: Position, sender: bytes, seq: int) -> bool:
        """False when ``position`` was another message's: Redis lost its latest writes (a crash with
        ``appendfsync everysec``) and counted again from an older offset in the same epoch.

        The room then starts a new epoch (every process tells its members of the gap), and this
        message is not delivered (its position is a lie). A window of the last positions per room
        with members here is kept: a loss goes back at most about a second of writes. A room with
        no member here (an HTTP view's broadcast) keeps none: the processes with members check it.
        """
        if room not in self._rooms:
            return True
        seen = self._seen.get(room)
        if seen is None:
            seen = self._seen[room] = collections.OrderedDict()
        key, ident = (position.epoch, position.offset), sender + b"%x" % seq
        before = seen.get(key)
        if before is None:
            seen[key] = ident
            if len(seen) > _SEEN_WINDOW:
                seen.popitem(last=False)
            return True
        if before == ident:
            return True  # the same message again (the answer to our publish, then its echo)
        self.counters["regressions"] += 1
        self._link_log.log("backplane: Redis gave room %s's position %d in epoch %s to two messages (it lost its "
                           "latest writes); the room starts a new epoch", escape_for_log(repr(room[:60])),
                           position.offset, position.epoch)
        seen.clear()
        self._new_epochs.setdefault(room, position.epoch)
        self._wake_publisher.set()
        return False

    def _hear_presence(self, channel: bytes, data: bytes) -> None:
        try:
            if not channel.startswith(self._room_prefix) or len(data) > _HEAD + _MAX_ID:
                raise ValueError("a presence event on another channel than a room's, or too long")
            user, arrived = decode_presence(data)
        except ValueError as exc:
            self.counters["rejected"] += 1
            self._warn.log("backplane: rejected a message on %s: %s", escape_for_log(channel.decode("latin-1")), exc)
            return
        self.counters["received"] += 1
        if self._on_presence is not None:
            self._on_presence(channel[len(self._room_prefix):].decode(), user, arrived)

    def _now_listening(self, channel: bytes) -> None:
        """Redis confirmed a subscription: joins waiting for it go on; a room's return is caught up."""
        self._listening.add(channel)
        for answer in self._listen_waiters.pop(channel, ()):
            answer(True)
        if self._presence_dirty:
            self._wake_publisher.set()  # arrivals in this room waited for it
        if channel.startswith(self._room_prefix):
            if channel in self._listened and self._on_relistened is not None:
                self._on_relistened(channel[len(self._room_prefix):].decode())
            self._listened.add(channel)

    def _not_listening(self) -> None:
        """The subscription connection is lost: nothing is heard until it is back (joins wait no more)."""
        self._listening.clear()
        self._unanswered.clear()  # that connection's commands: their confirmations never come
        # rooms left before their unsubscribe was confirmed: a later join is a first subscription
        self._listened &= {self._room_prefix + room.encode() for room in self._rooms}
        waiters, self._listen_waiters = self._listen_waiters, {}
        for answers in waiters.values():
            for answer in answers:
                answer(False)

    def _ordered(self, channel: bytes, data: bytes) -> None:
        """An inspection (on ``all``) or a close of one connection (on our own channel): to the answerer."""
        try:
            if data[:1] == _INSPECT:
                if channel != self._all:
                    raise ValueError("an inspection on another channel than all")
                _, reply_key, ttl_ms = decode_inspect(data)
                if not reply_key.startswith(self._names.reply_prefix):
                    raise ValueError("an inspection's reply key outside the prefix")
            else:
                if channel != self._own:
                    raise ValueError("a close of one connection on another channel than this process's")
                _, id, code, reason = decode_close_one(data)
        except ValueError as exc:
            self.counters["rejected"] += 1
            self._warn.log("backplane: rejected a message on %s: %s", escape_for_log(channel.decode("latin-1")), exc)
            return
        self.counters["received"] += 1
        if data[:1] == _INSPECT:
            self._answerer.inspect(reply_key, ttl_ms)
        else:
            self._answerer.close(id, code, reason)

    # -- the publisher: the one owner of the publishing connection ---------------------------

    def _publish_loop(self) -> None:
        attempt = 0
        stopped = False  # it has sent what came before close()
        client: redis.Redis | RedisCluster | None = None
        try:
            while not stopped:
                try:
                    if client is None:
                        if self._link is LinkState.CLOSED:
                            break  # no link to say goodbye on
                        # No automatic resend (retries=0): a batch may have reached Redis before
                        # its connection failed, and sent again it would be delivered twice.
                        client = (_cluster if self.sharded else _client)(
                            self.url, retries=0, socket_timeout=self.publish_timeout
                        )
                        client.ping()
                        # Written again from what the registry told us (the listener does the same
                        # once subscribed): Redis may have restarted empty, or our entries expired.
                        self._to_claim |= self._ids
                        self._presence_dirty.update(self._presence_counts)  # Redis may have restarted empty
                        if attempt:
                            self.counters["reconnects"] += 1
                            self._check_positions(client)  # before anything new is published
                        self._link_changed(LinkEvent.PUBLISHER_UP)
                        attempt = 0
                    self._wake_publisher.clear()  # before the check: a wake-up after it is not lost
                    now = time.monotonic()
                    if now >= self._next_refresh:  # the directory's heartbeat: every entry, a fresh TTL
                        self._next_refresh = now + self.id_ttl / 3
                        self._to_claim |= self._ids
                    if now >= self._next_presence:  # presence's heartbeat: every entry, a fresh expiry
                        self._next_presence = now + self.presence_ttl / 3
                        self._presence_dirty.update(self._presence_counts)
                    if not self._has_work():
                        wake_at = min(self._next_refresh, self._next_presence if self._presence_counts else math.inf)
                        self._wake_publisher.wait(max(0.0, wake_at - time.monotonic()))
                        continue
                    stopped = self._flush(client)
                except Exception as exc:  # a Redis or network error; anything else is logged in full
                    if not isinstance(exc, redis.RedisError | OSError):
                        log.exception("backplane: publisher failed")
                    self._link_changed(LinkEvent.PUBLISHER_LOST)
                    kept = self._keep_positioned()  # room messages with positions wait for Redis
                    lost = self._queued_messages - kept
                    self._queued_messages = kept
                    if lost:
                        self._drop(lost, f"Redis failed while publishing ({escape_for_log(str(exc))})")
                    else:
                        self._warn.log("backplane: publishing connection lost (%s)", escape_for_log(str(exc)))
                    if client is not None:
                        client.close()
                    client = None
                    if self._link is LinkState.CLOSED:
                        break
                    self._pause(attempt)
                    attempt += 1
        finally:
            if client is not None:
                client.close()
            left = sum(1 for op, _ in self._queue if op == "position")
            if left:  # closed while Redis could not take them: lost, and said so
                for op, args in self._queue:
                    if op == "position":
                        _told_dropped(self._tokens.pop(args[3], None), "the backplane closed before Redis took it")
                self._queue.clear()
                self._queued_messages = self._queued_bytes = 0
                self._drop(left, "the backplane closed before Redis took them")

    def _keep_positioned(self) -> int:
        """After a publishing failure: only room messages with positions (and their rooms' new-epoch
        markers) stay queued; others are dropped."""
        kept = collections.deque(item for item in self._queue if item[0] in ("position", "epoch", "stop"))
        self._queue = kept
        self._queued_bytes = sum(args[2] for op, args in kept if op == "position")
        return sum(1 for op, _ in kept if op == "position")

    def _has_work(self) -> bool:
        """Something to send: messages, a wake-up, new epochs, directory entries (written only once we listen)."""
        return bool(
            self._queue or self._wake_wanted or self._to_forget or self._new_epochs or self._presence_ready()
            or (self._link.listening and (self._to_claim or self._claims))
        )

    def _flush(self, client: redis.Redis | RedisCluster) -> bool:
        """Send a wake-up, the directory's changes and up to 256 queued operations in one pipeline.

        Returns True once the "stop" of close() was among them: everything before it is sent.

        Nothing is sent twice. A failure before any byte was written (connecting) leaves the
        batch unsent; after that, its messages may have reached Redis and are given up (counted
        in ``given_up`` and ``dropped``), never sent again. The wake-up and the directory's
        writes are idempotent: whatever did not surely succeed is done again after a reconnect.
        """
        wake, self._wake_wanted = self._wake_wanted, False
        listening = self._link.listening
        claims: dict[str, _Claim] = {}
        to_claim: set[str] = set()
        if listening:
            claims, self._claims = self._claims, {}
            to_claim, self._to_claim = self._to_claim - claims.keys(), set()
        to_forget, self._to_forget = self._to_forget, set()
        directory: _Chunk = [(id, "t" if pending.take_over else "c", pending) for id, pending in claims.items()]
        directory += [(id, "t" if id in self._take_over else "c", None) for id in to_claim]
        directory += [(id, "f", None) for id in to_forget]
        batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
        messages = [(op, args) for op, args in batch if op in ("publish", "send_to")]
        ordered = [(op, args) for op, args in batch if op in ("position", "epoch")]  # room messages, markers
        stopped = any(op == "stop" for op, _ in batch)  # everything queued before it is in this batch
        self._queued_messages -= len(messages) + sum(1 for op, _ in ordered if op == "position")
        self._writing_bytes = (sum(len(args[1]) for _, args in messages)
                               + sum(args[2] for op, args in ordered if op == "position"))
        self._queued_bytes -= self._writing_bytes
        self._marked.difference_update(args[0] for op, args in ordered if op == "epoch")
        positioned, epochs, marked = self._positioned_batch(ordered)
        presence = self._presence_ready()
        self._presence_dirty.difference_update(presence)
        chunks = [directory[start:start + _BATCH] for start in range(0, len(directory), _BATCH)]
        acks = iter([args[2] if op == "send_to" and len(args) > 2 else None for op, args in messages])
        kinds: list[str] = []  # what each command is: "wake", "directory" or a message's op
        woke = False  # the wake-up surely reached Redis: else it is sent again (a join must not wait)
        try:
            try:
                pipe: Any = _Sequential(client) if isinstance(client, RedisCluster) else client.pipeline(transaction=False)
                publish = getattr(pipe, self._publish_command)
                if wake:
                    for channel in self._wake_channels:
                        publish(channel, _WAKE)
                        kinds.append("wake")
                ttl_ms = max(1, int(self.id_ttl * 1000))
                for chunk in chunks:
                    pipe.eval(_DIRECTORY, len(chunk), *(self._names.id_key(id) for id, _, _ in chunk), self.uid, ttl_ms,
                              *(mode for _, mode, _ in chunk))
                    kinds.append("directory")
                for room, user in presence:  # absolute counts: written again after a failure, no harm
                    channel = self._room_prefix + room.encode()
                    pipe.eval(self._presence_script, 3, *presence_keys(channel, self.sharded), channel, self.uid, user,
                              self._presence_counts.get((room, user), 0), max(1, int(self.presence_ttl * 1000)))
                    kinds.append("presence")
                # Each room command is built in a try of its own: one that raises (a bug, a room name
                # that is not UTF-8) is dropped alone, never asked again; the rest of the batch goes.
                failed: list[tuple[str, Exception]] = []  # (room, what it raised), logged in one line
                kept_epochs: list[tuple[str, str | None]] = []
                for room, only_in in epochs:  # rooms that need a new epoch and have no message in this batch
                    try:
                        self._new_epoch_call(pipe, room, only_in)
                    except Exception as exc:
                        failed.append((room, exc))
                        continue
                    kept_epochs.append((room, only_in))
                    kinds.append("epoch")
                epochs = kept_epochs
                kept: list[tuple[tuple[Any, ...], bool]] = []
                gaps: list[str] = []  # rooms with a message dropped here: a new epoch with the next one, or after
                positioned_before = positioned
                for args, bump in positioned_before:
                    room, payload, _, seq, history, message, _ = args
                    bump = bump or room in gaps
                    try:
                        channel = self._room_prefix + room.encode()
                        pipe.eval(self._position_script, 2, *room_keys(channel, self.sharded), channel,
                                  positioned_head(message, self.uid),
                                  payload, new_epoch(), b"%016x" % seq, history.max_messages, history.max_bytes,
                                  max(1, int(history.max_age * 1000)), max(1, int(history.meta_ttl * 1000)),
                                  "1" if bump else "0")
                    except Exception as exc:
                        failed.append((room, exc))
                        self.counters["dropped"] += 1
                        _told_dropped(self._tokens.pop(seq, None), f"the publisher failed on it ({type(exc).__name__})")
                        if room not in gaps:
                            gaps.append(room)
                        continue
                    if room in gaps:
                        gaps.remove(room)
                    kept.append((args, bump))
                    kinds.append("position")
                positioned = kept
                kept_marked: list[str] = []
                for room in [*marked, *(room for room in gaps if room not in marked)]:
                    try:  # a drop after the room's messages of this batch: its new epoch after them
                        self._new_epoch_call(pipe, room, None)
                    except Exception as exc:
                        failed.append((room, exc))
                        continue
                    kept_marked.append(room)
                    kinds.append("marker")
                marked = kept_marked
                if failed:
                    lost = len(positioned_before) - len(positioned)
                    log.error("backplane: dropped %d message(s) and %d new epoch(s) the publisher failed on (%s, "
                              "room(s) %s); the rest of the batch goes on (%d dropped so far)", lost, len(failed) - lost,
                              ", ".join(sorted({type(exc).__name__ for _, exc in failed})),
                              ", ".join(sorted({escape_for_log(repr(room)) for room, _ in failed})[:3]),
                              self.counters["dropped"])
                for op, args in messages:
                    if op == "publish":
                        publish(*args)
                    else:
                        pipe.eval(self._send_to_script, 1, self._names.id_key(args[0]), self._proc_prefix, args[1])
                    kinds.append(op)
                results = self._execute(client, pipe, kinds)
            except _Unconfirmed as exc:
                ran = len(exc.done)
                woke = kinds[:ran].count("wake") == kinds.count("wake")  # they come first
                self._confirmed(kinds[:ran], exc.done, chunks, positioned, acks)  # a cluster's commands before the failure
                self._unconfirmed(kinds, ran, exc.written, chunks, len(messages))
                self._positioned_unconfirmed(kinds, ran, positioned, epochs, marked)
                self._presence_dirty.update(presence)  # not surely written: again after the reconnect
                raise exc.error from None
            except (redis.RedisError, OSError):
                raise
            except Exception as exc:  # not Redis's nor the network's (a bug): the batch is lost, and said so
                self._batch_failed(exc, client, messages, acks, positioned, epochs, marked, chunks, presence)
                return stopped
            woke = True
        finally:
            self._writing_bytes = 0
            if wake and not woke:
                self._wake_wanted = True
        self._confirmed(kinds, results, chunks, positioned, acks)
        return stopped

    def _new_epoch_call(self, pipe: Any, room: str, only_in: str | None) -> None:
        """Queue in ``pipe`` the start of ``room``'s new epoch (only if it is still in ``only_in``, unless None)."""
        channel = self._room_prefix + room.encode()
        pipe.eval(self._new_epoch_script, 2, *room_keys(channel, self.sharded), channel, EPOCH_NOTICE + b"e" + self.uid,
                  new_epoch(), int(DEFAULT_HISTORY.meta_ttl * 1000), only_in or "")

    def _batch_failed(
        self, exc: Exception, client: redis.Redis | RedisCluster, messages: list[tuple[str, tuple[Any, ...]]],
        acks: Iterator[Callable[[bool], None] | None], positioned: list[tuple[tuple[Any, ...], bool]],
        epochs: list[tuple[str, str | None]], marked: list[str], chunks: list[_Chunk], presence: list[tuple[str, str]],
    ) -> None:
        """A batch that failed on something other than Redis or the network (a bug): its messages
        are dropped, counted, logged in one line (no payload), their waiting callers told at once;
        its rooms start a new epoch (their members hear of the gap); the directory's and
        presence's writes are done again. The connection is closed: the next batch starts clean.

        The new epochs (of the batch's rooms, and those it was to ask) are asked at once, each in
        a command of its own: one that fails again on something not Redis's is dropped (logged),
        never asked again (no loop), and the others' gaps are still announced. A connection
        failure leaves them to the next batch."""
        why = f"the publisher failed on them ({type(exc).__name__})"
        count = len(messages) + len(positioned)
        self.counters["dropped"] += count
        if count:
            log.error("backplane: dropped a batch of %d message(s): %s (%d dropped so far)", count, why,
                      self.counters["dropped"])
        else:
            log.error("backplane: the publisher failed on a batch without messages (%s); its new epochs "
                      "are asked again one by one", type(exc).__name__)
        for ack in acks:
            if ack is not None:
                _answer(ack, MessageDropped(why))
        rooms: dict[str, str | None] = {args[0]: None for args, _ in positioned}
        for args, _ in positioned:
            _told_dropped(self._tokens.pop(args[3], None), why)
        rooms.update((room, None) for room in marked)
        for room, only_in in epochs:
            rooms.setdefault(room, only_in)
        self._wake_publisher.set()
        self._unconfirmed(["directory"] * len(chunks), 0, 0, chunks, 0)  # the directory's work: done again
        self._presence_dirty.update(presence)
        if not isinstance(client, RedisCluster):
            client.connection_pool.disconnect()  # what it had half read or written is not the next batch's
        todo = sorted(rooms.items())
        for index, (room, only_in) in enumerate(todo):  # each alone: a failure tells which room it was
            try:
                pipe: Any = _Sequential(client) if isinstance(client, RedisCluster) else client.pipeline(transaction=False)
                self._new_epoch_call(pipe, room, only_in)
                pipe.execute(raise_on_error=False)  # an error Redis answers is let go, as in a batch
            except (redis.RedisError, OSError, _Interrupted):  # the link failed: with the next batch
                for later, later_only_in in todo[index:]:
                    if later_only_in is None:
                        self._new_epochs[later] = None
                    else:
                        self._new_epochs.setdefault(later, later_only_in)
                break
            except Exception as again:  # this room's command itself fails: its gap cannot be announced
                log.error("backplane: the new epoch of room %s failed (%s): not asked again",
                          escape_for_log(repr(room)), type(again).__name__)
                if not isinstance(client, RedisCluster):
                    client.connection_pool.disconnect()

    def _presence_ready(self) -> list[tuple[str, str]]:
        """The presence entries to write now: an arrival only once this process hears the room
        (else its own event, published by the write, would pass it by); a departure at once."""
        return sorted(
            (room, user) for room, user in self._presence_dirty
            if (room, user) not in self._presence_counts or self._room_prefix + room.encode() in self._listening
        )

    def _positioned_batch(
        self, ops: list[tuple[str, tuple[Any, ...]]]
    ) -> tuple[list[tuple[tuple[Any, ...], bool]], list[tuple[str, str | None]], list[str]]:
        """The batch's room messages (each with "start a new epoch first"), the rooms that need a new
        epoch before them, and the rooms whose new epoch comes after them (a drop after their last
        message in the batch: ``ops`` holds the queue's markers, in order).

        A message queued longer than ``max_pending_age`` is dropped here (counted, its waiting
        publish() told) and its room starts a new epoch after the messages before it: with its
        next message, or after the batch's messages. The room's members hear of the gap where it is.
        """
        now = time.monotonic()
        kept: list[tuple[tuple[Any, ...], bool]] = []
        marked: list[str] = []  # in order: rooms with a drop after their last message so far
        for op, args in ops:
            room = args[0]
            if op == "position" and now - args[6] > self.max_pending_age:
                why = f"it waited {now - args[6]:.0f} s for Redis (max_pending_age {self.max_pending_age:g})"
                _told_dropped(self._tokens.pop(args[3], None), why)
                self._drop(1, why)
                op = "epoch"
            if op == "epoch":
                if room not in marked:
                    marked.append(room)
                continue
            bump = room in marked
            if bump:
                marked.remove(room)
            if room in self._new_epochs and self._new_epochs[room] is None:
                del self._new_epochs[room]
                bump = True
            kept.append((args, bump))
        epochs, self._new_epochs = sorted(self._new_epochs.items()), {}
        return kept, epochs, marked

    def _positioned_unconfirmed(
        self, kinds: list[str], ran: int, positioned: list[tuple[tuple[Any, ...], bool]],
        epochs: list[tuple[str, str | None]], marked: list[str],
    ) -> None:
        """After a connection error: the room messages and new epochs not surely applied go first again,
        in their order (a message that was to start a new epoch, after a marker that says so).

        Sending them again is safe: Redis applies each publish sequence number once.
        """
        first = kinds.index("position") if positioned else len(kinds)
        again: list[tuple[str, tuple[Any, ...]]] = []
        for index, (args, bump) in enumerate(positioned):
            if first + index >= ran:
                if bump:
                    again.append(("epoch", (args[0],)))
                again.append(("position", args))
        first = kinds.index("marker") if marked else len(kinds)
        again += [("epoch", (room,)) for index, room in enumerate(marked) if first + index >= ran]
        self._new_epochs.update(epochs[max(ran - kinds.index("epoch"), 0):] if epochs else ())
        self._queue.extendleft(reversed(again))
        self._queued_messages += sum(1 for op, _ in again if op == "position")
        self._queued_bytes += sum(args[2] for op, args in again if op == "position")

    def _execute(self, client: redis.Redis | RedisCluster, pipe: Any, kinds: list[str]) -> list[Any]:
        """Run the batch; on a connection error raise :class:`_Unconfirmed`: what ran, what may have been written."""
        if not kinds:
            return []
        if isinstance(client, RedisCluster):
            try:
                return list(pipe.execute())
            except _Interrupted as exc:  # the commands run one by one: the failed one may have run
                raise _Unconfirmed(exc.done, len(exc.done) + 1, exc.error) from None
        try:
            _connect_before_writing(client)
        except (redis.RedisError, OSError) as exc:  # nothing of the batch was written
            raise _Unconfirmed([], 0, exc) from None
        try:
            return list(pipe.execute(raise_on_error=False))
        except (redis.RedisError, OSError) as exc:  # written, maybe run: none of it is sent again
            raise _Unconfirmed([], len(kinds), exc) from None

    def _unconfirmed(self, kinds: list[str], ran: int, written: int, chunks: list[_Chunk], messages: int) -> None:
        """After a connection error: count the messages; keep the directory's work for after the reconnect.

        Commands ``[:ran]`` ran (a cluster's, counted already), ``[ran:written]`` may have reached
        Redis, the rest was never written. Messages that may have reached it are given up: never
        sent twice. Messages never written are dropped, as while Redis is unreachable.
        """
        first = len(kinds) - messages  # the messages come last
        reached = min(max(written - first, 0), messages)
        given_up = reached - min(max(ran - first, 0), messages)
        if given_up:
            self.counters["given_up"] += given_up
            self._drop(given_up, "the connection to Redis failed once they were written: not sent again, "
                                 f"maybe delivered ({self.counters['given_up']} given up so far)")
        if messages - reached:
            self._drop(messages - reached, "Redis failed while publishing (not written)")
        first_chunk = kinds.index("directory") if chunks else 0
        for chunk in chunks[max(ran - first_chunk, 0):]:  # not surely written: done again after the reconnect
            for id, mode, pending in chunk:
                if pending is not None:  # answered once the link is back, or True when it goes down
                    waiting = self._claims.setdefault(id, _Claim())
                    waiting.take_over = waiting.take_over or pending.take_over
                    waiting.answers.extend(pending.answers)
                elif id in self._ids:
                    self._to_claim.add(id)
                elif mode == "f":
                    self._to_forget.add(id)

    def _confirmed(
        self, kinds: list[str], results: list[Any], chunks: list[_Chunk],
        positioned: list[tuple[tuple[Any, ...], bool]] | None = None,
        acks: Iterator[Callable[[bool], None] | None] | None = None,
    ) -> None:
        """Count what Redis answered; settle the claims; note the local ids another process has; deliver
        the room messages Redis gave a position (as heard: the registry orders them with the others).

        A callback that raises is logged; the batch's other answers are still handled (and the
        publisher goes on)."""
        answered = iter(chunks)
        ordered = iter(positioned or ())
        for kind, result in zip(kinds, results, strict=True):
            try:
                self._answered_one(kind, result, answered, ordered, acks)
            except Exception:
                log.exception("backplane: handling Redis's answer to a %s failed", kind)

    def _answered_one(
        self, kind: str, result: Any, answered: Iterator[_Chunk],
        ordered: Iterator[tuple[tuple[Any, ...], bool]], acks: Iterator[Callable[[bool], None] | None] | None,
    ) -> None:
        """One command's answer (see :meth:`_confirmed`); the iterators advance before any callback runs."""
        if kind == "directory":
            self._directory_answered(next(answered), result)
            return
        if kind in ("wake", "epoch", "marker", "presence"):
            return
        if kind == "position":
            self._positioned_answered(next(ordered)[0], result)
            return
        ack = next(acks, None) if acks is not None else None  # the messages' (publish, send_to), in order
        if isinstance(result, Exception):  # Redis refused the command (out of memory, ...)
            why = f"Redis refused it ({escape_for_log(str(result))})"
            self._drop(1, why)
            _answer(ack, MessageDropped(why))
        elif kind == "publish":
            self.counters["published"] += 1
        elif result == -1 or result == 0:  # no such id, or its process is not listening
            self.counters["unknown_ids"] += 1
            self._warn.log("backplane: send_to an id no process has (%d so far)", self.counters["unknown_ids"])
            _answer(ack, False)
        else:
            self.counters["published"] += 1
            _answer(ack, True)

    def _positioned_answered(self, args: tuple[Any, ...], result: Any) -> None:
        room, _, _, seq, _, message, _ = args
        if isinstance(result, Exception):  # Redis refused the script (out of memory, ...)
            why = f"Redis refused it ({escape_for_log(str(result))})"
            _told_dropped(self._tokens.pop(seq, None), why)
            self._lose(room, why)
            return
        self.counters["published"] += 1
        epoch, offset = result[0].decode(), int(result[1])
        if offset < 1:  # applied before this resend: heard then (or still to be heard: its token waits for it)
            return
        if not self._same_as_before(room, Position(epoch, offset), self.uid, seq):
            return
        token = self._tokens.pop(seq, None)
        if self._on_positioned is not None:
            self._on_positioned(room, Position(epoch, offset), message, token)

    def _directory_answered(self, chunk: _Chunk, result: Any) -> None:
        """One script call's answer: 1 (the entry is ours) or 0 per id; or the error Redis answered."""
        if isinstance(result, Exception):  # the script failed in Redis (out of memory, ...): not retried at once
            self._warn.log("backplane: the directory could not be written (%s); again at the next refresh",
                           escape_for_log(str(result)))
            for id, _, pending in chunk:
                if pending is not None:  # unchecked, as when Redis is down
                    if pending.take_over:
                        self._take_over.add(id)
                    for answer in pending.answers:
                        answer(True)
            return
        for (id, mode, pending), won in zip(chunk, result, strict=True):
            if pending is not None:
                if not won:
                    self.counters["ids_refused"] += 1
                for answer in pending.answers:
                    answer(bool(won))
            if mode == "f":
                continue
            if won:
                self._take_over.discard(id)
                self._lost.discard(id)
            elif pending is None and id in self._ids and id not in self._lost:
                self._lost.add(id)
                self.counters["ids_lost"] += 1
                self._warn.log("backplane: id %s is another process's in the directory: its direct messages go "
                               "there (%d lost so far)", escape_for_log(repr(id)), self.counters["ids_lost"])


class _Unconfirmed(Exception):
    """A batch's connection failed: ``done`` holds the replies of the commands that ran (a cluster's,
    run one by one), and the commands up to ``written`` may have reached Redis."""

    def __init__(self, done: list[Any], written: int, error: Exception) -> None:
        super().__init__(str(error))
        self.done, self.written, self.error = done, written, error


def _answer(ack: Callable[[Any], Any] | None, value: Any) -> None:
    """Call a waiting caller's ``ack`` (a callback of the registry): what it raises is logged, never
    the publisher's problem."""
    if ack is None:
        return
    try:
        ack(value)
    except Exception:
        log.exception("backplane: an acknowledgement callback failed")


def _told_dropped(token: Any, why: str) -> None:
    """A room message that will never have a position: the ``publish(..., timeout)`` waiting for it
    (a token with an ``ack``, ``broadcast/ordered_rooms.py``) raises :class:`MessageDropped` at once."""
    ack = getattr(token, "ack", None)
    if callable(ack):
        _answer(ack, MessageDropped(why))
