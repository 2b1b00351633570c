"""redis-py clients for the backplane: gevent connections, and one subscription connection per shard.

* :class:`_GeventConnection`: redis-py's TCP connection on a gevent socket, so that the
  backplane cooperates with or without monkey-patching;
* :func:`_options`, :func:`_client`, :func:`_cluster`: the clients the backplane's greenlets
  own (one connection each; RESP2; a command is never sent twice);
* :func:`_connect_before_writing`: (re)connect a client's connection before a batch is written;
* :class:`_Sequential`: a pipeline's interface for a cluster client, which says how far it got;
* :class:`_Shard` and :func:`_open_shards`: the listener's subscription connections (the whole
  Redis, or one per primary of a Redis Cluster, each with its own channels).

Nothing here owns a greenlet or knows the backplane: the backplane's listener subscribes a
shard (:meth:`_Shard.start`), applies room changes (:meth:`_Shard.update`) and reads it.

Example::

    shard, = _open_shards("redis://127.0.0.1:6379/0", sharded=False, own=b"{ignitia}:proc:UID",
                          wake_prefix="ignitia:wake:UID:")
    shard.start({b"ignitia:all", b"{ignitia}:proc:UID"})      # SUBSCRIBE, on a gevent socket
    shard.pending[b"ignitia:room:lobby"] = True              # a local member joined the lobby
    shard.update()                                           # SUBSCRIBE ignitia:room:lobby
    message = shard.pubsub.get_message(timeout=5.0)
    shard.close()
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, cast

import gevent.monkey
import gevent.socket
import redis
import redis.connection
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

__all__: list[str] = []

#: How long a connection attempt may take.
_CONNECT_TIMEOUT = 5.0


class _GeventConnection(redis.connection.Connection):
    """redis-py's TCP connection on a gevent socket: cooperative without monkey-patching."""

    def _connect(self) -> socket.socket:
        sock = gevent.socket.create_connection((self.host, self.port), timeout=self.socket_connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.socket_keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.settimeout(self.socket_timeout)
        return sock


class _GeventSentinelConnection(SentinelManagedConnection):
    """A connection to the primary that Sentinel names, on a gevent socket (found again after a failover)."""

    def _connect(self) -> socket.socket:
        return _GeventConnection._connect(self)  # type: ignore[arg-type]


#: The scheme of a Redis reached through Sentinel: ``redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]``.
SENTINEL_SCHEME = "redis+sentinel://"


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """The sentinels, the service (its primary's name), the database and the password of a Sentinel URL.

    Raises:
        ValueError: not ``redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]``.

    Example:
        >>> parse_sentinel_url("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379/mymaster/2")
        ([('10.0.0.1', 26379), ('10.0.0.2', 26379)], 'mymaster', 2, 's3cret')
    """
    rest = url[len(SENTINEL_SCHEME):] if url.startswith(SENTINEL_SCHEME) else ""
    credentials, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    parts = [part for part in path.split("/") if part]
    try:
        sentinels = [(host, int(port)) for host, _, port in (item.rpartition(":") for item in hosts.split(","))]
        service, db = parts[0], int(parts[1]) if len(parts) > 1 else 0
    except (ValueError, IndexError):
        raise ValueError("a Sentinel URL is redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]") from None
    if not all(host for host, _ in sentinels) or len(parts) > 2:
        raise ValueError("a Sentinel URL is redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]")
    password = urllib.parse.unquote(credentials.partition(":")[2]) or None if credentials else None
    return sentinels, service, db, password


def sentinel_primary(url: str, connection_class: type[redis.connection.Connection] | None, **options: Any) -> redis.Redis:
    """A client of the primary that the URL's sentinels name (found again after a failover).

    ``connection_class``: gevent connections (the backplane's), or None: plain sockets (a caller's).
    """
    sentinels, service, db, password = parse_sentinel_url(url)
    options.pop("connection_class", None)
    max_connections = options.pop("max_connections", None)
    sentinel_options: dict[str, Any] = {
        key: options[key] for key in ("socket_timeout", "socket_connect_timeout") if key in options
    }
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_options, password=password, db=db, **options)
    if connection_class is not None:  # the sentinels are asked on gevent sockets too
        sentinel.sentinels = [
            redis.Redis(connection_pool=redis.ConnectionPool(host=host, port=port, connection_class=connection_class,
                                                             **sentinel_options))
            for host, port in sentinels
        ]
    if connection_class is not None:
        options = {"connection_class": _GeventSentinelConnection}
    else:
        options = {}
    if max_connections is not None:
        options["max_connections"] = max_connections
    primary: redis.Redis = sentinel.master_for(service, connection_pool_class=SentinelConnectionPool, **options)
    return primary


def _options(url: str, *, retries: int, socket_timeout: float | None) -> dict[str, Any]:
    """redis-py options: gevent sockets, RESP2 (plain replies), our own retry policy.

    Raises:
        ValueError: ``rediss://`` or ``unix://`` in a process that is not monkey-patched (their
            sockets would block the hub).

    Example:
        >>> _options("redis://127.0.0.1:6379/0", retries=0, socket_timeout=None)["connection_class"].__name__
        '_GeventConnection'
    """
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout, "socket_connect_timeout": _CONNECT_TIMEOUT, "socket_keepalive": True,
        # redis-py's retry resends a command (a whole pipeline) after any connection error, also
        # one that cut the connection after Redis ran it: the backplane passes 0 and decides
        # itself (only what is known unsent may be sent again). A connection that Redis closed
        # while idle (its ``timeout``) is not an error: the pool reconnects it before writing.
        "retry": Retry(NoBackoff(), retries, supported_errors=(redis.ConnectionError,)), "protocol": 2,
    }
    if url.startswith(("redis://", SENTINEL_SCHEME)):
        options["connection_class"] = _GeventConnection
    elif not gevent.monkey.is_module_patched("socket"):
        raise ValueError(f"{url.split(':')[0]}:// needs a monkey-patched process (gevent.monkey.patch_all())")
    return options


def _client(url: str, *, retries: int, socket_timeout: float | None) -> redis.Redis:
    """A redis-py client with one gevent connection."""
    options = _options(url, retries=retries, socket_timeout=socket_timeout)
    if url.startswith(SENTINEL_SCHEME):
        return sentinel_primary(url, options.pop("connection_class"), max_connections=1, **options)
    return redis.Redis(connection_pool=redis.ConnectionPool.from_url(url, max_connections=1, **options))


def _cluster(url: str, *, retries: int, socket_timeout: float | None) -> RedisCluster:
    """A Redis Cluster client (slot map, one connection per node) on gevent connections."""
    return RedisCluster.from_url(url, **_options(url, retries=retries, socket_timeout=socket_timeout))


def _connect_before_writing(client: redis.Redis) -> None:
    """Connect the client's one connection now, or reconnect it if Redis closed it meanwhile.

    What fails here failed before any byte of the next batch was written: that batch is known
    unsent. redis-py's pool checks a pooled connection before lending it (a connection that
    Redis closed while idle, its ``timeout``, is reconnected then), so the batch's own
    ``execute()`` then finds it ready.
    """
    pool = client.connection_pool
    try:
        connection = pool.get_connection()
    except TypeError:  # redis-py < 5.3 wants a command name
        connection = pool.get_connection("PING")  # type: ignore[call-arg,unused-ignore]
    pool.release(connection)


class _Interrupted(Exception):
    """A :class:`_Sequential` batch stopped by a connection error: ``done`` ran, the rest was not sent.

    The command that failed (``done``'s length is its index) may have run.
    """

    def __init__(self, done: list[Any], error: Exception) -> None:
        super().__init__(str(error))
        self.done = done
        self.error = error


class _Sequential:
    """A pipeline's interface for a cluster client: commands queued, then run one by one (no cross-slot batches).

    :meth:`execute` returns a reply (or the :class:`redis.ResponseError` Redis answered) per
    command, as ``pipeline.execute(raise_on_error=False)`` does; a connection error stops it with
    :class:`_Interrupted`, which says which commands ran.
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        method = getattr(self._client, name)

        def call(*args: Any) -> None:
            self._calls.append((method, args))

        return call

    def execute(self, raise_on_error: bool = False) -> list[Any]:
        """Run the commands queued since the last call, in order; their replies, in order."""
        calls, self._calls = self._calls, []
        results: list[Any] = []
        for method, args in calls:
            try:
                results.append(method(*args))
            except redis.ResponseError as exc:  # Redis answered: the connection is fine
                results.append(exc)
            except (redis.RedisError, OSError) as exc:
                raise _Interrupted(results, exc) from exc
        return results


class _Shard:
    """One subscription connection: the whole Redis, or one cluster shard and its channels.

    Args:
        client: a client with one connection to that Redis or shard.
        wake: the channel that wakes its listener (this process's own direct channel), or None
            to draw one that hashes to this shard from ``wake_prefix``.
        node: the cluster client and this shard's primary's name, or None (not sharded).
        wake_prefix: see ``wake``.
    """

    def __init__(
        self, client: redis.Redis, wake: bytes | None, node: tuple[RedisCluster, str] | None, wake_prefix: str = ""
    ) -> None:
        self.client = client
        self.pubsub: Any = cast(Any, client).pubsub()  # typed in some redis-py releases, not in others
        self.sharded = node is not None
        #: The type of a published message as this connection hears it.
        self.kind = "smessage" if self.sharded else "message"
        self._slots: set[int] | None = None
        if node is not None:
            cluster, name = node
            slots = cluster.nodes_manager.slots_cache
            self._slots = {slot for slot, nodes in slots.items() if nodes and nodes[0].name == name}
        #: The wake channel: our own direct channel, or one that hashes to this shard.
        self.wake = wake if wake is not None else next(
            channel for k in range(1_000_000) if self.owns(channel := f"{wake_prefix}{k}".encode())
        )
        #: Room channels joined (True) or left (False) since the last update.
        self.pending: dict[bytes, bool] = {}
        #: The channels subscribed (or being subscribed) on this connection.
        self.subscribed: set[bytes] = set()
        self._unsubscribing: set[bytes] = set()

    def start(self, channels: Iterable[bytes]) -> None:
        """Subscribe to those of ``channels`` this shard owns, and to its wake channel (connects)."""
        self.subscribed = {channel for channel in channels if self.owns(channel)} | {self.wake}
        self._subscribe(*self.subscribed)

    def owns(self, channel: bytes) -> bool:
        """True when ``channel``'s traffic goes through this shard."""
        return self._slots is None or key_slot(channel) in self._slots

    def update(self) -> None:
        """Apply the pending joins and leaves (several changes to one room: the last one wins)."""
        changes, self.pending = self.pending, {}
        add = [channel for channel, wanted in changes.items() if wanted and channel not in self.subscribed]
        remove = [channel for channel, wanted in changes.items() if not wanted and channel in self.subscribed]
        if add:
            self._subscribe(*add)
            self.subscribed.update(add)
        if remove:
            self.subscribed.difference_update(remove)
            self._unsubscribing.update(remove)
            self._unsubscribe(*remove)

    def confirm_unsubscribe(self, channel: bytes) -> bool:
        """True for the answer to our own unsubscribe; False when the server dropped a channel we want."""
        if channel in self._unsubscribing:
            self._unsubscribing.discard(channel)
            return True
        return channel not in self.subscribed

    def _subscribe(self, *channels: bytes) -> None:
        for group in self._by_slot(channels):
            (self.pubsub.ssubscribe if self.sharded else self.pubsub.subscribe)(*group)

    def _unsubscribe(self, *channels: bytes) -> None:
        for group in self._by_slot(channels):
            (self.pubsub.sunsubscribe if self.sharded else self.pubsub.unsubscribe)(*group)

    def _by_slot(self, channels: tuple[bytes, ...]) -> list[list[bytes]]:
        """One group in all, or one per slot: SSUBSCRIBE takes channels of one slot only."""
        if not self.sharded:
            return [list(channels)]
        groups: dict[int, list[bytes]] = {}
        for channel in channels:
            groups.setdefault(key_slot(channel), []).append(channel)
        return list(groups.values())

    def close(self) -> None:
        """Close the subscription and its connection."""
        self.pubsub.close()
        self.client.close()


def _open_shards(url: str, *, sharded: bool, own: bytes, wake_prefix: str) -> list[_Shard]:
    """One shard for the whole Redis, or one per primary of the cluster at ``url``; none subscribed yet.

    Not sharded, the shard's wake channel is ``own`` (this process's direct channel); sharded,
    each shard's is drawn from ``wake_prefix``. Only the cluster's slot map is read here.
    """
    if not sharded:
        return [_Shard(_client(url, retries=0, socket_timeout=None), own, None)]
    cluster = _cluster(url, retries=0, socket_timeout=None)
    try:
        shards = []
        for node in cluster.get_primaries():  # type: ignore[no-untyped-call]
            options = _options(url, retries=0, socket_timeout=None)
            client = redis.Redis(
                connection_pool=redis.ConnectionPool(host=node.host, port=node.port, max_connections=1, **options)
            )
            shards.append(_Shard(client, None, (cluster, node.name), wake_prefix))
        return shards
    finally:
        cluster.close()
