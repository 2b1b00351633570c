"""What every host of connections is, and the one upgrade pipeline they all go through.

A *host* is what serves WebSocket connections: the standalone
:class:`~ignitia_sync.hosting.server.Server`, a WSGI application's
:class:`~ignitia_sync.wsgi.WebSocketHost` (``WebSocketMiddleware``, Flask's ``Sock``,
Django's views) and, through the server, the ``TestClient``. They differ only in how they
get a request and a socket; from there, :meth:`Host.open` (every check before the 101) and
:meth:`Host.serve` (the 101, the connection, its handler, its accounting) are the same
code, so every limit, refusal and log line is the same under every host::

    request ──► Host.open(request, target) ──► Opening ──► Host.serve(opening, sock) ──► closed
                  │ shutting down? 503                        │ 101 written
                  │ upgrade checks (sansio): 400/405/426/431  │ WebSocketConnection made, ws.host set
                  │ connection limits: 503                    │ rate filter, extensions
                  │ middleware: 401/403/429...                │ serve_connection: handler, close code
                  ▼                                           ▼
            HandshakeError (counted, one log line)      stats, limits released, one access line

Example:
    >>> host = Host(HostSettings(max_connections=100))
    >>> host.stats()["open_connections"], host.settings.max_connections
    (0, 100)
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from socket import AF_UNIX, IPPROTO_TCP, TCP_NODELAY
from typing import TYPE_CHECKING, Any, NamedTuple

import gevent.event

from .._support import tracing
from .._support.logs import LogThrottle, escape_for_log, show_logs_by_default
from ..broadcast import rooms_wire
from ..broadcast.backplane import Backplane, LocalBackplane
from ..broadcast.positions import DEFAULT_HISTORY, HistoryChoice
from ..broadcast.registry import Registry
from ..connection.connection import WebSocketConnection
from ..exceptions import HandshakeError
from ..handlers import Handler
from ..message import check_revocation_close
from ..middleware import Middleware, RateLimit, message_filter, run_middleware
from ..router import Route, Router
from ..sansio.http import Request
from ..sansio.server_handshake import Accepted, accept
from ..settings import ConnectionSettings
from .blocking import BlockingWatch, watch_this_hub
from .inspection import ConnectionInfo, describe
from .serve import log_access, serve_connection
from .stats import ConnectionStats

if TYPE_CHECKING:
    import socket

__all__ = [
    "ConnectionLimits", "Host", "HostSettings", "Opening", "RouteTargets", "Target", "backplane_from", "hosts",
    "shutdown_all",
]

log = logging.getLogger("ignitia_sync.server")

#: Every host of this process that is still referenced (see :func:`shutdown_all`).
_hosts: weakref.WeakSet[Host] = weakref.WeakSet()
#: Refusals whose upgrade span :meth:`Host.open` ended already (``refused`` makes one for the others).
_traced_refusals: weakref.WeakSet[BaseException] = weakref.WeakSet()


@dataclass(frozen=True)
class HostSettings(ConnectionSettings):
    """The per-connection settings plus what every host enforces before a 101.

    Attributes:
        backplane: carries broadcasts and ``send_to`` to other processes (a
            :class:`~ignitia_sync.redis.RedisBackplane`, or its URL); in-process when None.
        max_connections: open connections beyond which upgrades get 503 (None: no limit).
        max_connections_per_ip: the same, per client IP (counted from the moment the
            limits are checked, so concurrent handshakes cannot slip past it).
        max_request_head: the largest upgrade request head in bytes (431 past it); under a
            WSGI server, the head as the server parsed it (request line and headers).
        blocking_warning: seconds a handler may hold the event loop before one warning
            names its route and what to do (see :mod:`~ignitia_sync.hosting.blocking`);
            None: not watched.
        history: what each room keeps for members that come back: positions and the last
            messages (:class:`~ignitia_sync.broadcast.positions.History`, 200 messages and 5
            minutes by default), None for no positions at all, or a function of the room name
            choosing either (``lambda room: None if room.startswith("typing:") else History()``).
        presence: keep who is in each room (``registry.presence(room)``, ``registry.on_presence``,
            ``presence`` frames for clients of the rooms wire format), across every process with
            a Redis backplane; off by default (each join and leave of a connection with a user
            then costs a write to Redis).

    Example:
        >>> HostSettings(max_connections_per_ip=10).max_request_head
        16384
    """

    backplane: Backplane | str | None = None
    max_connections: int | None = None
    max_connections_per_ip: int | None = None
    max_request_head: int = 16384
    blocking_warning: float | None = 1.0
    history: HistoryChoice = DEFAULT_HISTORY
    presence: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_request_head < 256:
            raise ValueError("max_request_head must be at least 256")
        if self.blocking_warning is not None and not self.blocking_warning > 0:
            raise ValueError(f"blocking_warning must be positive seconds or None, not {self.blocking_warning!r}")
        for name in ("max_connections", "max_connections_per_ip"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int or None, not {value!r}")


def backplane_from(value: Backplane | str | None) -> Backplane:
    """A backplane from a setting: a Backplane, a Redis URL, or None (this process only).

    Example:
        >>> type(backplane_from(None)).__name__
        'LocalBackplane'
    """
    if value is None:
        return LocalBackplane()
    if isinstance(value, str):
        from ..redis.backplane import RedisBackplane  # redis-py is needed only here

        return RedisBackplane(value)
    return value


class Target(NamedTuple):
    """What an upgrade request is for: a route's handler, its parameters and options.

    Example:
        >>> from ignitia_sync.handlers import as_handler
        >>> Target(as_handler(lambda ws: None), {}, ConnectionSettings(), pattern="/echo").pattern
        '/echo'
    """

    handler: Handler
    params: Mapping[str, Any]
    settings: ConnectionSettings
    middleware: tuple[Middleware, ...] = ()
    rate_limit: RateLimit | None = None
    #: The route as registered (``/chat/:room``), for logs: never the user's path.
    pattern: str = ""


class RouteTargets:
    """The :class:`Target` of a router's routes: a host's base settings with each route's options.

    A route's settings are made once and cached; a route registered again under the same
    pattern gets new ones. The router's own middleware runs before the route's.

    Example:
        >>> from ignitia_sync.router import Router
        >>> router = Router().websocket("/big", lambda ws: None, max_message_size=4096)
        >>> RouteTargets(ConnectionSettings(), router).of(router.routes[0], {}).settings.max_message_size
        4096
    """

    def __init__(self, base: ConnectionSettings, router: Router) -> None:
        self.base = base
        self.router = router
        self._cache: dict[str, tuple[Route, ConnectionSettings]] = {}

    def of(self, route: Route, params: Mapping[str, Any]) -> Target:
        """What an upgrade to ``route`` with these path parameters is for."""
        found = self._cache.get(route.pattern)
        if found is None or found[0] is not route:
            found = (route, dataclasses.replace(self.base, **route.options) if route.options else self.base)
            self._cache[route.pattern] = found
        chain = (*self.router.global_middleware, *route.middleware)
        return Target(route.handler, params, found[1], chain, route.rate_limit, route.pattern)


class Opening(NamedTuple):
    """An upgrade that passed every check: what :meth:`Host.serve` needs to make the connection."""

    request: Request
    accepted: Accepted
    extensions: dict[Any, Any]
    target: Target
    #: The upgrade's span (``_support.tracing``); None when tracing is off.
    span: Any = None


class ConnectionLimits:
    """``max_connections`` and ``max_connections_per_ip``: a place is held from the check on.

    Example:
        >>> limits = ConnectionLimits(1, None)
        >>> limits.reserve("10.0.0.1")
        >>> limits.reserve("10.0.0.2")
        Traceback (most recent call last):
        ...
        ignitia_sync.exceptions.HandshakeError: 503: too many connections
        >>> limits.release("10.0.0.1")
    """

    __slots__ = ("_held", "_limit", "_lock", "_per_ip", "_per_ip_limit")

    def __init__(self, limit: int | None, per_ip: int | None) -> None:
        self._limit, self._per_ip_limit = limit, per_ip
        self._held = 0
        self._per_ip: Counter[str] = Counter()
        self._lock = threading.Lock()  # threaded WSGI servers reserve from several threads

    @property
    def counting(self) -> bool:
        """False when there is no limit (nothing is counted)."""
        return self._limit is not None or self._per_ip_limit is not None

    def reserve(self, ip: str) -> None:
        """Hold a place for ``ip``, or refuse.

        Raises:
            HandshakeError: 503 past either limit.
        """
        if not self.counting:
            return
        with self._lock:
            if self._limit is not None and self._held >= self._limit:
                raise HandshakeError(503, "too many connections", (("Retry-After", "5"),))
            if self._per_ip_limit is not None and self._per_ip[ip] >= self._per_ip_limit:
                raise HandshakeError(503, "too many connections from your address", (("Retry-After", "5"),))
            self._held += 1
            self._per_ip[ip] += 1

    def release(self, ip: str) -> None:
        """Give back the place :meth:`reserve` held."""
        if not self.counting:
            return
        with self._lock:
            self._held -= 1
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]


class Host:
    """Settings, a registry, statistics, limits and shutdown: what every host of connections is.

    Subclasses obtain requests and sockets (a listener, a WSGI server) and call
    :meth:`open`, then :meth:`serve`; nothing else decides whether a connection opens.

    Args:
        settings: a :class:`HostSettings` (a server passes its ``ServerSettings``).
        trusted_proxies: addresses whose ``Forwarded``/``X-Forwarded-For`` name the client
            (see :func:`~ignitia_sync.sansio.http.client_ip`); None trusts nobody.

    Example:
        >>> host = Host(HostSettings())
        >>> host.shutting_down
        False
    """

    #: True for hosts inside a server they do not own (a WSGI app's): :func:`shutdown_all`
    #: stops them when the process ends. A server stops itself.
    ends_with_process = False

    def __init__(self, settings: HostSettings, *, trusted_proxies: tuple[str, ...] | None = None) -> None:
        self.settings = settings
        self.trusted_proxies = trusted_proxies
        #: Every open connection of this host, with rooms and broadcast.
        self.registry = Registry(backplane_from(settings.backplane), history=settings.history,
                                 presence=settings.presence)
        #: Set when the host begins to shut down; handlers see it as ``ws.shutting_down``.
        self.shutdown_event = gevent.event.Event()
        self._stats = ConnectionStats()
        self._limits = ConnectionLimits(settings.max_connections, settings.max_connections_per_ip)
        self._refusal_log = LogThrottle(log)
        self._serving = 0  # upgrades between open() and the end of serve(); the backplane outlives them
        self._serving_lock = threading.Lock()
        # Each served connection's own id, route pattern and client IP (inspect_connections()).
        self._opened: dict[WebSocketConnection, tuple[str, str, str]] = {}
        self._opened_lock = threading.Lock()
        self._watch: BlockingWatch | None = None
        self._offer_inspection()
        show_logs_by_default()  # an application that configured no logging still sees tracebacks
        _hosts.add(self)

    # -- the pipeline -------------------------------------------------------------------

    def open(self, request: Request, target: Target) -> Opening:
        """Every check before the 101: shutdown, the upgrade itself, limits, middleware.

        On success a place is held (limits, the serving count) until :meth:`serve` ends
        (or :meth:`abandon`). The caller reports a refusal with :meth:`refused` and answers it.

        Raises:
            HandshakeError: the refusal (status, one-line reason, headers).
        """
        with self._serving_lock:  # counted from here, so that a shutdown cannot miss this one
            stopping = self.shutdown_event.is_set()
            if not stopping:
                self._serving += 1
        reserved = None
        span = tracing.start_upgrade(
            request.method, request.path, request.headers, target.pattern, request.client_ip
        ) if tracing.ENABLED else None
        try:
            if stopping:  # another worker or the restarted server will take it
                raise HandshakeError(503, "server shutting down", (("Retry-After", "1"),))
            accepted = accept(request, target.settings, max_head=self.settings.max_request_head)
            self._limits.reserve(request.client_ip)
            reserved = request.client_ip
            chain = target.middleware
            extensions = run_middleware(chain, request) if chain else {}
        except BaseException as exc:
            if reserved is not None:
                self._limits.release(reserved)
            if not stopping:
                self._served()
            if span is not None:
                refusal = exc if isinstance(exc, HandshakeError) else HandshakeError(500, type(exc).__name__)
                tracing.end_upgrade(span, refusal.status, refusal.body)
                if refusal is exc:
                    _traced_refusals.add(exc)
            raise
        return Opening(request, accepted, extensions, target, span)

    def abandon(self, opening: Opening, exc: HandshakeError | None = None) -> None:
        """Give back what :meth:`open` held, for an opening that will not be served.

        ``exc``: the refusal the caller reports next with :meth:`refused` (it ends the
        upgrade's span here, with its status and reason).
        """
        self._limits.release(opening.request.client_ip)
        self._served()
        if opening.span is not None:
            tracing.end_upgrade(opening.span, exc.status if exc else 500, exc.body if exc else "abandoned")
            if exc is not None:
                _traced_refusals.add(exc)

    def refused(self, request: Request | None, exc: HandshakeError, peer: str = "-") -> None:
        """Count a refusal and write its one (throttled) log line: no query, no token, no payload."""
        self._stats.refused(exc.status)
        if tracing.ENABLED and exc not in _traced_refusals:  # refused before open(): 404, a bad head
            tracing.end_upgrade(
                tracing.start_upgrade(request.method, request.path, request.headers, "", request.client_ip)
                if request else tracing.start_upgrade("", "", {}, "", peer),
                exc.status, exc.body,
            )
        self._refusal_log.log(
            "refused %s %s from %s: %d %s",
            request.method if request else "-",
            escape_for_log(request.path) if request else "-",
            (request.client_ip or request.remote_address[0]) if request else peer,
            exc.status, escape_for_log(exc.body),
        )

    def serve(
        self,
        opening: Opening,
        sock: socket.socket,
        initial_data: bytes = b"",
        connection_class: type[WebSocketConnection] = WebSocketConnection,
        *,
        server_logs: bool = False,
    ) -> None:
        """Write the 101 and serve the connection until it is closed and accounted for.

        ``initial_data``: what the client sent after its request head (its first frames).
        ``server_logs``: the WSGI server writes its own access line for the request
        (pywsgi, Werkzeug), so ours is written at DEBUG: one line per WebSocket either way.
        A client that left before the 101 could be written is closed quietly.
        """
        request, accepted, extensions, target, span = opening
        ws = None
        try:
            if sock.family != AF_UNIX:
                # Small frames go out at once, not when the peer acknowledges the last.
                sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
            answer = accepted.response
            sent = sock.send(answer)  # one send() nearly always takes it all
            if sent < len(answer):
                sock.sendall(answer[sent:])
            ws = connection_class(
                sock,
                request,
                accepted.protocol,
                subprotocol=accepted.subprotocol,
                settings=target.settings,
                initial_data=initial_data,
                shutdown_event=self.shutdown_event,
            )
            ws.host = self
            ws.extensions = extensions
            if target.rate_limit is not None:
                ws._filter = message_filter(target.rate_limit, ws)
            if accepted.subprotocol == rooms_wire.SUBPROTOCOL:
                rooms_wire.install(ws)  # the client's hello is read before the handler runs
        except BaseException as exc:  # what open() held is given back, whatever failed
            sock.close()
            self._limits.release(request.client_ip)
            self._served()
            tracing.end_upgrade(span, None if isinstance(exc, OSError) else 500, f"before the 101: {exc!r}")
            if not isinstance(exc, OSError):
                raise
            log.debug("upgrade from %s ended before the 101: %s", request.client_ip, exc)  # the client left
            return
        self._stats.opened(target.pattern)
        connection_span = None
        if span is not None:
            tracing.end_upgrade(span, 101)
            connection_span = tracing.start_connection(span, target.pattern)
        with self._opened_lock:  # for inspect_connections(): its own id, route and peer
            self._opened[ws] = (ws.id, target.pattern, request.client_ip)
        try:
            closed = self._closed_logged_by_server if server_logs else self._closed
            on_closed = functools.partial(closed, route=target.pattern)
            with tracing.current(connection_span):  # the handler's own spans are its children
                serve_connection(ws, target.handler, target.params, registry=self.registry, on_closed=on_closed,
                                 hello_timeout=target.settings.hello_timeout if ws._resume is not None else None)
        finally:
            tracing.end_connection(connection_span, ws.close_code, ws.messages_in, ws.messages_out)
            with self._opened_lock:
                self._opened.pop(ws, None)
            self._served()

    def watch_blocking(self) -> None:
        """Watch the calling thread's hub for handlers that block it (``blocking_warning``)."""
        threshold = self.settings.blocking_warning
        if threshold is not None and (self._watch is None or not self._watch.running):
            self._watch = watch_this_hub(threshold)

    def _closed(self, ws: WebSocketConnection, route: str = "") -> None:
        """Fold a closed connection into the totals, free its place, write its access line."""
        self._limits.release(ws.request.client_ip)
        self._stats.closed(ws, route)
        log_access(ws)

    def _closed_logged_by_server(self, ws: WebSocketConnection, route: str = "") -> None:
        """:meth:`_closed` where the WSGI server writes the access line: ours at DEBUG."""
        self._limits.release(ws.request.client_ip)
        self._stats.closed(ws, route)
        log_access(ws, logging.DEBUG)

    def _served(self) -> None:
        """An upgrade is over: after the last one of a shutdown, close the backplane."""
        with self._serving_lock:
            self._serving -= 1
            last = not self._serving
        if last and self.shutdown_event.is_set():
            self.registry.backplane.close()

    def _start_afresh(self) -> None:
        """In a child process after a fork: the parent's connections, places and backplane are not here.

        A registry that never started (the usual case: gunicorn ``--preload`` makes the app in
        the master, which serves nothing) is left as it is; it starts in the child. One that
        did start gets a new backplane from the setting (a URL, or None), since the parent's
        greenlets or thread do not exist in the child.
        """
        registry = self.registry
        if not registry._attached and not len(registry):
            return
        setting = self.settings.backplane
        if setting is None or isinstance(setting, str):
            backplane = backplane_from(setting)
        else:
            backplane = setting
            log.warning(
                "a backplane object started before this process was forked cannot serve it: "
                "pass its URL (backplane='redis://...') so that each process makes its own"
            )
        registry._start_afresh(backplane)
        self._offer_inspection()
        self._stats = ConnectionStats()  # the parent's totals are the parent's
        self._watch = None  # the parent's watch thread does not exist here
        self._limits = ConnectionLimits(self.settings.max_connections, self.settings.max_connections_per_ip)
        self._serving = 0
        self._serving_lock = threading.Lock()
        self._opened = {}
        self._opened_lock = threading.Lock()

    # -- what every host offers ---------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        """True once the host has begun to shut down (upgrades then get 503)."""
        return self.shutdown_event.is_set()

    @property
    def drained(self) -> bool:
        """True once the host has shut down and its last connection is closed (and accounted for).

        Example:
            >>> host = Host(HostSettings())
            >>> host.drained
            False
            >>> host.shutdown()
            >>> host.drained
            True
        """
        return self.shutdown_event.is_set() and not self._serving

    @property
    def connections(self) -> frozenset[WebSocketConnection]:
        """A snapshot of the open connections."""
        return frozenset(self.registry)

    def inspect_connections(self) -> list[ConnectionInfo]:
        """One :class:`~ignitia_sync.hosting.inspection.ConnectionInfo` per open connection, oldest first.

        A snapshot, safe from any thread (like :meth:`stats`): who is connected, on which
        route, from where, since when, in which rooms, as which user (``user_id``: the
        connection's user, else its ``identify`` id; ``application_id``: that id alone), and
        how much waits to be written to each. (:attr:`connections` gives the connection objects
        themselves.)

        Example:
            >>> from ignitia_sync import Router
            >>> from ignitia_sync.testing import TestClient
            >>> def chat(ws, room):
            ...     ws.join(room)
            ...     ws.registry.set_user(ws, "alice")
            ...     ws.registry.identify(ws, "alice-phone")
            ...     for message in ws:
            ...         ws.send(message)
            >>> with TestClient(Router().websocket("/chat/:room", chat)) as client:
            ...     ws = client.connect("/chat/lobby")
            ...     ws.send_text("hi")
            ...     _ = ws.recv(timeout=5)  # answered: joined, with a user and identified
            ...     [(c.route, sorted(c.rooms), c.user_id, c.application_id, c.messages_in)
            ...      for c in client.server.inspect_connections()]
            [('/chat/:room', ['lobby'], 'alice', 'alice-phone', 1)]
        """
        memberships = self.registry.memberships()
        with self._opened_lock:
            opened = dict(self._opened)
        return describe(memberships, opened)

    def close_connection(self, id: str, code: int = 1008, reason: str = "") -> bool:
        """Close this host's open connection whose own id is ``id`` (``"#17"``, as inspected); from any thread.

        Like ``ws.close(code, reason)`` in the connection's own thread: what is queued goes
        first. Returns False when no open connection of this host has that id.

        Raises:
            ValueError: a code or reason a revocation may not send (1000, 1001, 1008, 3000-4999).

        Example:
            >>> Host(HostSettings()).close_connection("#17", 4000, "bye")
            False
        """
        check_revocation_close(code, reason)
        with self._opened_lock:
            found = [ws for ws, (own_id, _, _) in self._opened.items() if own_id == id]
        if not found or found[0].state != "open":
            return False
        found[0]._transport.run_in_own_thread(found[0].close, code, reason)
        return True

    def _offer_inspection(self) -> None:
        """Let the backplane answer inspections from other processes with this host's connections."""
        offer = getattr(self.registry.backplane, "add_inspectable", None)  # the Redis one has it
        if offer is not None:
            offer(self)

    def routes_stats(self) -> dict[str, Any]:
        """Per route pattern: connections ``opened`` and ``closed`` (keyed by (pattern, close code)).

        Example:
            >>> Host(HostSettings()).routes_stats()
            {'opened': {}, 'closed': {}}
        """
        return self._stats.by_route()

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring: open connections, totals, close codes, refusals, queues.

        Example:
            >>> Host(HostSettings()).stats()["refused"]
            {}
        """
        return {
            **self._stats.snapshot(self.registry),
            "shutting_down": self.shutdown_event.is_set(),
            "backplane": self.registry.backplane.stats(),
        }

    def shutdown(self, code: int = 1001, reason: str = "Server shutdown") -> None:
        """Refuse new upgrades (503) and close every open connection (each sends its queue first).

        The backplane closes once the last handler has returned, so that what handlers
        broadcast while they wind down (a "left the room") still reaches other processes.
        Call it from the serving hub; from another thread use :func:`shutdown_all` or
        ``host.registry.call_threadsafe(host.shutdown)``.
        """
        idle = self._begin_shutdown()
        self.registry.close_all(code, reason)
        if idle:
            self.registry.backplane.close()

    def _begin_shutdown(self) -> bool:
        """Set the shutdown event (no upgrade slips in between); True when nothing is being served."""
        with self._serving_lock:
            self.shutdown_event.set()
            return not self._serving


def hosts() -> list[Host]:
    """Every host of this process that is still referenced.

    Example:
        >>> host = Host(HostSettings())
        >>> host in hosts()
        True
    """
    return list(_hosts)


def shutdown_all(code: int = 1001, reason: str = "Server shutdown") -> None:
    """:meth:`Host.shutdown` every host that ends with the process (a WSGI app's), each in its own hub.

    The gunicorn worker and a stopping server that serves a WSGI app call it.

    Example::

        shutdown_all()
    """
    for host in list(_hosts):
        if host.ends_with_process and not host.shutting_down:
            host.registry.call_threadsafe(host.shutdown, code, reason)


def _after_fork_in_child() -> None:
    """A pre-fork server (gunicorn) made the WSGI app's hosts before forking: each starts afresh here."""
    for host in list(_hosts):
        if host.ends_with_process:
            host._start_afresh()


os.register_at_fork(after_in_child=_after_fork_in_child)
