"""A Redis pub/sub backplane: rooms, broadcasts and direct sends across processes and hosts.

``Server(router, addr, backplane=RedisBackplane("redis://redis:6379/0"))`` (or
``backplane=`` on the WSGI, Flask and Django hosts): ``registry.broadcast(message,
room=...)`` then reaches every member in every process, and ``registry.send_to(id,
message)`` the connection ``identify``'d as ``id`` wherever it lives.

Channels (``prefix`` is ``"ignitia"`` by default):

* ``PREFIX:all``: broadcasts to every connection; every process listens.
* ``PREFIX:room:NAME``: a room's broadcasts; a process listens only while it has local
  members in the room.
* ``{PREFIX}:proc:UID``: direct sends to one process; the hash ``{PREFIX}:ids`` maps each
  application id to the process that has it (one hash tag: one cluster slot).

With ``sharded=True`` (Redis Cluster, Redis 7+) the same channels are shard channels
(SPUBLISH/SSUBSCRIBE): a room's traffic goes through the shard that owns its channel.

Delivery is **at most once**, as with every pub/sub backplane: a message published while
Redis is unreachable, or while a process is reconnecting, is lost for the processes that
did not get it. Such losses are never silent: they are counted (``stats()["dropped"]``),
logged, and ``on_backplane_down``/``on_backplane_up`` are called when the link changes.

One greenlet owns the subscription connections (``redis/shards.py``; it alone reads and
writes them), another owns the publishing connection; handlers only append to a bounded
queue, so a publish never blocks a handler. Both use gevent sockets, so the backplane
cooperates with or without monkey-patching. The state of the link to Redis is one
:class:`~ignitia_sync.redis.link.LinkState` (``redis/link.py``), changed only through its
table of transitions.

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
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import redis
from redis.cluster import RedisCluster

from .._support.backoff import Backoff
from .._support.logs import LogThrottle, safe_url
from ..broadcast.backplane import Deliver, DeliverTo
from ..connection.threads import HubRef, allocate_real_lock
from ..message import Message
from ..sansio.http import escape_for_log
from ..settings import ConnectionSettings
from .envelope import (
    _BROADCAST,
    _DIRECT,
    _FORGET,
    _HEAD,
    _MAX_ID,
    _SEND_TO,
    _WAKE,
    _Names,
    _new_uid,
    decode,
    encode,
)
from .link import LinkEvent, LinkState, transition
from .shards import _client, _cluster, _open_shards, _Sequential, _Shard

__all__ = ["RedisBackplane"]

log = logging.getLogger("ignitia_sync.redis")


class RedisBackplane:
    """Rooms, broadcasts and ``send_to`` across processes, over Redis pub/sub.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` and ``unix://`` in a monkey-patched
            process); a password goes in the URL.
        prefix: the start of every channel and key (several apps can share one Redis).
        max_message_size: larger messages are delivered locally but not published (counted
            as dropped); it is also the largest envelope accepted from Redis. Default:
            ConnectionSettings' ``max_message_size``.
        max_pending: messages waiting to be published; beyond, new ones are dropped (counted).
        health_check_interval: with no traffic for this long, the listener pings Redis; no
            answer within another interval means a dead link (reconnect).
        reconnect_initial, reconnect_max: reconnect delays: random in [0, d], d doubling
            from ``reconnect_initial`` up to ``reconnect_max`` seconds.
        publish_timeout: a publish that takes longer fails (the link is then down).
        sharded: ``url`` is a node of a Redis Cluster (Redis 7+): sharded pub/sub
            (SPUBLISH/SSUBSCRIBE), so each room's traffic goes through the one shard that owns
            its channel, and the cluster grows with more shards. One listener per shard.
        on_backplane_down, on_backplane_up: called with the backplane when the link to
            Redis is lost and when it is back (both connections up).

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
        health_check_interval: float = 5.0,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 5.0,
        publish_timeout: float = 5.0,
        sharded: bool = False,
        on_backplane_down: Callable[[RedisBackplane], Any] | None = None,
        on_backplane_up: Callable[[RedisBackplane], Any] | None = None,
    ) -> None:
        if max_message_size <= 0 or max_pending <= 0 or health_check_interval <= 0:
            raise ValueError("max_message_size, max_pending and health_check_interval must be positive")
        if not 0 < reconnect_initial <= reconnect_max:
            raise ValueError("need 0 < reconnect_initial <= reconnect_max")
        self.url = url
        self.prefix = prefix
        self.max_message_size = max_message_size
        self.max_pending = max_pending
        self.health_check_interval = health_check_interval
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self._backoff = Backoff(first=reconnect_initial, factor=2.0, cap=reconnect_max)
        self.publish_timeout = publish_timeout
        self.on_backplane_down = on_backplane_down
        self.on_backplane_up = on_backplane_up
        self.sharded = sharded
        #: This process's id on the backplane (its direct channel is ``{PREFIX}:proc:UID``);
        #: drawn again in :meth:`attach`, so that processes forked after construction (gunicorn
        #: ``--preload``) each have their own.
        self.uid = _new_uid()
        self._names = names = _Names(prefix)
        self._all, self._room_prefix, self._proc_prefix, self._ids_key = (
            names.all, names.room_prefix, names.proc_prefix, names.ids_key
        )
        self._own = self._proc_prefix + self.uid
        self._publish_command = "spublish" if sharded else "publish"
        self._wake_channels: list[bytes] = [self._own]  # one per shard listener
        self._live_shards: list[_Shard] = []  # the connected shard listeners, told of room changes
        self._rooms: set[str] = set()  # rooms with local members: what we want to hear
        self._ids: set[str] = set()  # application ids of local connections
        self._queue: collections.deque[tuple[str, tuple[Any, ...]]] = collections.deque()
        self._queued_messages = 0
        self._wake_publisher = gevent.event.Event()
        self._on_broadcast: Deliver | None = None
        self._on_direct: DeliverTo | None = None
        self._greenlets: list[gevent.Greenlet[Any, Any]] = []
        self._listener: gevent.Greenlet[Any, Any] | None = None
        self._hub: HubRef | None = None  # the hub the greenlets run in: the one owner of what follows
        self._attach_lock = allocate_real_lock()
        self._wake_queued = False  # one wake in the queue is enough
        #: All of the link's state (redis/link.py), changed only in the hub: by _link_changed and _stop.
        self._link = LinkState.CONNECTING
        self._warn = LogThrottle(log, burst=10, interval=10.0, level=logging.WARNING)
        self.counters = collections.Counter[str]()

    # -- the Backplane interface (called by the registry; never blocks) -----------------

    def attach(self, on_broadcast: Deliver, on_direct: DeliverTo, *, threaded: bool = False) -> None:
        """Start the listener and the publisher (in this hub, or in a thread of their own)."""
        with self._attach_lock:
            if self._on_broadcast is not None:
                return
            self._on_broadcast, self._on_direct = on_broadcast, on_direct
        self.uid = _new_uid()  # this process's own, even if the object was made before a fork
        self._own = self._proc_prefix + self.uid
        self._wake_channels = [self._own]
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
        self._enqueue_message("publish", (channel, encode(_BROADCAST, message, self.uid)))

    def send_to(self, id: str, message: Message) -> bool:
        """Queue a direct send; the process that has ``id`` delivers it (unknown ids are counted)."""
        if self._handed_over(self.send_to, id, message):
            return True
        return self._enqueue_message("send_to", (id, encode(_DIRECT, message, self.uid, id)))

    def joined(self, room: str) -> None:
        """Listen to ``room``'s channel (the listener applies it at once)."""
        if not self._handed_over(self.joined, room):
            self._rooms.add(room)
            self._subscriptions_changed(self._room_prefix + room.encode(), True)

    def left(self, room: str) -> None:
        """Stop listening to ``room``'s channel."""
        if not self._handed_over(self.left, room):
            self._rooms.discard(room)
            self._subscriptions_changed(self._room_prefix + room.encode(), False)

    def identified(self, id: str) -> None:
        """Record in Redis that ``id`` lives here."""
        if not self._handed_over(self.identified, id):
            self._ids.add(id)
            self._enqueue("identify", (id,))

    def forgotten(self, id: str) -> None:
        """Remove ``id`` from Redis's directory, if it still points here."""
        if not self._handed_over(self.forgotten, id):
            self._ids.discard(id)
            self._enqueue("forget", (id,))

    def stats(self) -> dict[str, Any]:
        """``up``, ``published``, ``received``, ``dropped``, ``unknown_ids``, ``rejected``, ``reconnects``, ...

        Example:
            >>> sorted(RedisBackplane().stats())[:3]
            ['dropped', 'kind', 'pending']
        """
        return {
            "kind": "redis", "process": self.uid.decode(), "up": self._link.up, "pending": self._queued_messages,
            "rooms": len(self._rooms),
            **{name: self.counters[name] for name in
               ("published", "received", "dropped", "unknown_ids", "rejected", "reconnects")},
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
        for id in self._ids:
            self._enqueue("forget", (id,))
        self._enqueue("stop", ())
        if self._listener is not None:
            self._listener.kill(block=False)

    # -- queueing --------------------------------------------------------------------------

    def _enqueue_message(self, op: str, args: tuple[Any, ...]) -> bool:
        if self._link is LinkState.CLOSED:
            return self._drop(1, "the backplane is closed")
        size = len(args[1]) - _HEAD
        if size > self.max_message_size:
            return self._drop(1, f"message of {size} bytes is over max_message_size")
        if self._link.drops:
            return self._drop(1, "Redis is unreachable")
        if self._queued_messages >= self.max_pending:
            return self._drop(1, f"{self.max_pending} messages already wait to be published")
        self._queued_messages += 1
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
        for shard in self._live_shards:
            if shard.owns(channel):
                shard.pending[channel] = wanted
        if self._link.up and not self._wake_queued:
            self._wake_queued = True
            self._enqueue("wake", ())  # each shard listener wakes when it hears its wake channel

    # -- up and down -------------------------------------------------------------------------

    def _link_changed(self, event: LinkEvent) -> None:
        """Move the link's state (redis/link.py); log and call back when it comes up or goes down."""
        was_up = self._link.up
        self._link = transition(self._link, event)
        up = self._link.up
        if up == was_up:
            return
        if up:
            log.info("backplane: connected to Redis (%s)", safe_url(self.url))
        else:
            self._warn.log("backplane: lost Redis (%s); broadcasts stay local until it is back", safe_url(self.url))
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
                self._wake_channels = [shard.wake for shard in shards]
                if failed:
                    self.counters["reconnects"] += 1
                # The ids go into the directory only now that this process hears its own channel
                # (and again after a reconnect: Redis may have restarted empty).
                self._enqueue("register", ())
                self._link_changed(LinkEvent.LISTENER_UP)
                listeners = [gevent.spawn(self._listen_shard, shard) for shard in shards]
                for ended in gevent.joinall(listeners, count=1):
                    raise ended.value if isinstance(ended.value, Exception) else redis.ConnectionError("listener ended")
            except Exception as exc:  # a Redis or network error; anything else is logged in full
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
                shard.update()
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
            elif message["type"] == "sunsubscribe" and not shard.confirm_unsubscribe(message["channel"]):
                raise redis.ConnectionError("the cluster moved a channel's slot")  # resubscribe everywhere

    def _hear(self, channel: bytes, data: bytes) -> None:
        if data == _WAKE or data[2:_HEAD] == self.uid:
            return  # a wake-up, or our own broadcast (delivered locally already)
        try:
            if len(data) > self.max_message_size + _HEAD + 2 + _MAX_ID:
                raise ValueError("over max_message_size")
            kind, _, id, message = decode(data)
        except ValueError as exc:  # not ours, malformed, not UTF-8: never delivered
            self.counters["rejected"] += 1
            self._warn.log("backplane: rejected a message on %s: %s", escape_for_log(channel.decode("latin-1")), exc)
            return
        self.counters["received"] += 1
        assert self._on_broadcast is not None and self._on_direct is not None
        if kind == _DIRECT:
            assert id is not None
            self._on_direct(id, message)
        elif channel == self._all:
            self._on_broadcast(message, None)
        elif channel.startswith(self._room_prefix):
            self._on_broadcast(message, channel[len(self._room_prefix):].decode())

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
                        client = (_cluster if self.sharded else _client)(
                            self.url, retries=1, socket_timeout=self.publish_timeout
                        )
                        client.ping()
                        send_to = client.register_script(_SEND_TO % ("SPUBLISH" if self.sharded else "PUBLISH"))
                        forget = client.register_script(_FORGET)
                        if self._link.listening:  # else the listener's "register" does it, once subscribed
                            self._register_ids(client)
                        if attempt:
                            self.counters["reconnects"] += 1
                        self._link_changed(LinkEvent.PUBLISHER_UP)
                        attempt = 0
                    self._wake_publisher.clear()  # before the check: a wake-up after it is not lost
                    if not self._queue:
                        self._wake_publisher.wait()
                        continue
                    stopped = self._flush(client, send_to, forget)
                except Exception as exc:  # a Redis or network error; anything else is logged in full
                    if not isinstance(exc, redis.RedisError | OSError):
                        log.exception("backplane: publisher failed")
                    self._link_changed(LinkEvent.PUBLISHER_LOST)
                    lost = self._queued_messages
                    self._queue.clear()
                    self._queued_messages = 0
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

    def _register_ids(self, client: Any) -> None:
        """Say (again) which application ids live here: Redis may have restarted empty."""
        if self._ids:
            client.hset(self._ids_key, mapping=dict.fromkeys(self._ids, self.uid))

    def _flush(self, client: redis.Redis | RedisCluster, send_to: Any, forget: Any) -> bool:
        """Send what is queued, up to 256 operations in one pipeline (one round trip).

        Returns True once the "stop" of close() was among them: everything before it is sent.
        """
        batch = [self._queue.popleft() for _ in range(min(256, len(self._queue)))]
        pipe: Any
        if isinstance(client, RedisCluster):
            pipe = _Sequential(client)
            run_script = pipe.run_script
        else:
            pipe = client.pipeline(transaction=False)

            def run_script(script: Any, keys: list[Any], args: list[Any]) -> None:
                script(keys=keys, args=args, client=pipe)

        publish = getattr(pipe, self._publish_command)
        issued: list[str] = []  # the operation of each command, in order (a wake may be several)
        messages = sum(1 for op, _ in batch if op in ("publish", "send_to"))
        stopped = False
        self._queued_messages -= messages
        try:
            for op, args in batch:
                if op == "publish":
                    publish(*args)
                elif op == "send_to":
                    run_script(send_to, [self._ids_key], [args[0], self._proc_prefix, args[1]])
                elif op == "identify":
                    if not self._link.listening:
                        continue  # not subscribed to our channel yet: "register" writes it once we are
                    pipe.hset(self._ids_key, args[0], self.uid)
                elif op == "forget":
                    run_script(forget, [self._ids_key], [args[0], self.uid])
                elif op == "register":
                    if not self._ids or not self._link.listening:
                        continue
                    self._register_ids(pipe)
                elif op == "stop":
                    stopped = True  # everything queued before it has been sent
                    continue
                else:  # wake every shard listener
                    self._wake_queued = False
                    for channel in self._wake_channels:
                        publish(channel, _WAKE)
                    issued.extend([op] * (len(self._wake_channels) - 1))
                issued.append(op)
            results = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._drop(messages, f"Redis failed while publishing ({escape_for_log(str(exc))})")  # the batch in flight
            raise
        for op, result in zip(issued, results, strict=True):
            if op == "publish":
                self.counters["published"] += 1
            elif op == "send_to":
                if result == -1 or result == 0:  # no such id, or its process is gone
                    self.counters["unknown_ids"] += 1
                    self._warn.log("backplane: send_to an id no process has (%d so far)", self.counters["unknown_ids"])
                else:
                    self.counters["published"] += 1
        return stopped
