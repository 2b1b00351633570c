"""The gevent WebSocket server: accept, upgrade, run handlers, shut down.

:class:`Server` owns the life cycle (start, stop, signals), TLS and the reading of each
request head; its listening socket is a :class:`~ignitia_sync.hosting.listener.Listener`, and
plain HTTP for its ``wsgi_app`` goes to a
:class:`~ignitia_sync.hosting.pywsgi_fallback.PywsgiFallback`.

Example:
    >>> from ignitia_sync import Message, Router, Server
    >>> def echo(ws):
    ...     for message in ws:
    ...         if isinstance(message, (Message.Text, Message.Binary)):
    ...             ws.send(message)
    >>> app = Router().websocket("/echo", echo)
    >>> from ignitia_sync.client import connect
    >>> with Server(app, ("127.0.0.1", 0)) as server:  # a port of its own, served from a thread
    ...     with connect(f"ws://127.0.0.1:{server.address[1]}/echo") as ws:
    ...         ws.send_text("hi")
    ...         ws.recv(timeout=5)
    Text(data='hi')
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import signal
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import gevent
import gevent.event
import gevent.pool
import gevent.ssl

from ..connection.threads import HubRef
from ..exceptions import HandshakeError
from ..router import Router
from ..sansio import framing
from ..sansio.http import Request, RequestHeadReader, client_ip, error_response
from .host import Host, HostSettings, Opening, RouteTargets, hosts
from .listener import Listener
from .pywsgi_fallback import HandOff, PywsgiFallback
from .sockets import HOSTS_KEY

if TYPE_CHECKING:
    import ssl

__all__ = ["Server", "ServerSettings", "run"]

log = logging.getLogger("ignitia_sync.server")


@dataclass(frozen=True)
class ServerSettings(HostSettings):
    """Every limit and option of a :class:`Server`: the per-connection ones, the host's, the listener's.

    The fields of :class:`~ignitia_sync.settings.ConnectionSettings` (``max_message_size``,
    ``max_queue``, ``close_timeout``, ``compression``, ``subprotocols``, ``outbox_limit``,
    ``send_timeout``, ``ping_interval``, ``ping_timeout``, ``idle_timeout``) apply to each
    connection and may be overridden per route; those of
    :class:`~ignitia_sync.hosting.host.HostSettings` (``backplane``, ``max_connections``,
    ``max_connections_per_ip``, ``max_request_head``) apply under every host; these belong
    to the listener:

    Attributes:
        handshake_timeout: seconds a client has to send its complete upgrade request (TLS
            included); on a connection handed to ``wsgi_app``, each next request head too
            (the wait for it in keep-alive included). Past it the connection is closed.
        ssl_context: serve ``wss://`` with this context.
        backlog: the listen backlog: where new connections wait while the server is at
            ``max_pending_handshakes``.
        shutdown_timeout: seconds :meth:`Server.stop` waits for handlers to finish.
        shutdown_grace: seconds handlers get to react to ``shutdown_event`` before every
            connection is closed with 1001.
        max_pending_handshakes: sockets waiting for a request head (in their TLS and HTTP
            handshake, or handed to ``wsgi_app`` and waiting for the next request) at which
            the server stops accepting: new connections wait in the kernel's listen backlog
            until one of these ends, or until the oldest has been silent for
            ``handshake_grace``; that one is then closed to make room (503 if it had sent
            part of a head; nothing written otherwise, nor under TLS). Nobody is refused for
            arriving in a burst.
        max_pending_handshakes_per_ip: per peer address, the handshakes still silent after
            ``handshake_grace`` that it may hold: when a new connection comes from an address
            holding this many, the oldest of them is closed (503 as above). Handshakes younger than
            the grace never count, so a burst of fast clients from one address (a reverse
            proxy's) is never refused. Not applied with ``trust_forwarded``, where every
            peer is the proxy.
        handshake_grace: seconds a socket may wait for its request head (TLS included) before
            it counts as silent: against ``max_pending_handshakes_per_ip``, and as one that
            may be closed to make room. Below ``handshake_timeout``, or nothing is ever
            closed before its timeout.
        trust_forwarded: take the client IP from ``Forwarded`` / ``X-Forwarded-For`` when
            the peer is one of ``forwarded_allow_ips`` (behind a proxy you run).
        forwarded_allow_ips: the proxies (addresses or networks) trusted with
            ``trust_forwarded``; loopback by default.
        certfile: serve ``wss://`` with this certificate chain (and ``keyfile``).
        keyfile: the private key for ``certfile``.
        handle_signals: when :meth:`Server.serve_forever` (or ``ignitia()``) runs in the
            main thread, SIGTERM and SIGINT stop the server gracefully (1001 to everyone,
            queued messages first) and it returns normally; False leaves signals alone.
        metrics: serve Prometheus metrics (``pip install 'ignitia_sync[metrics]'``) at
            ``/metrics`` (True) or at this path; False: not served.
        metrics_allow: the peer addresses or networks that may read ``metrics`` (403 for the
            others): loopback by default. The peer is the socket's, never a forwarded one.

    Example:
        >>> ServerSettings(max_message_size=4096).max_queue
        16
    """

    handshake_timeout: float = 10.0
    ssl_context: ssl.SSLContext | None = None
    backlog: int = 1024
    shutdown_timeout: float = 10.0
    shutdown_grace: float = 1.0
    max_pending_handshakes: int = 1024
    max_pending_handshakes_per_ip: int = 128
    handshake_grace: float = 1.0
    trust_forwarded: bool = False
    forwarded_allow_ips: Sequence[str] = ("127.0.0.1", "::1")
    certfile: str | None = None
    keyfile: str | None = None
    handle_signals: bool = True
    metrics: bool | str = False
    metrics_allow: Sequence[str] = ("127.0.0.0/8", "::1/128")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.metrics, str) and not self.metrics.startswith("/"):
            raise ValueError(f"metrics must be True or a path starting with '/', not {self.metrics!r}")
        if isinstance(self.metrics_allow, str):
            raise TypeError("metrics_allow must be a sequence of addresses or networks, not a string")
        for network in self.metrics_allow:
            ipaddress.ip_network(network, strict=False)
        if isinstance(self.forwarded_allow_ips, str):
            raise TypeError("forwarded_allow_ips must be a sequence of addresses, not a string")
        for proxy in self.forwarded_allow_ips:
            ipaddress.ip_network(proxy, strict=False)  # ValueError for a typo, now
        if self.max_pending_handshakes < 1 or self.max_pending_handshakes_per_ip < 1:
            raise ValueError("max_pending_handshakes and max_pending_handshakes_per_ip must be at least 1")
        if not self.handshake_grace >= 0:
            raise ValueError("handshake_grace must be a number of seconds, 0 or more")


class _Evicted(BaseException):
    """Thrown into a connection's greenlet waiting for a request head, to close it: its place is
    needed, or the server stops."""


def _has_bytes_waiting(sock: socket.socket) -> bool:
    """True when the client has sent bytes not read yet (a request that came as it was being closed)."""
    try:
        raw = getattr(sock, "_sock", sock)  # gevent's socket wraps the real one
        return bool(raw.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)))  # gevent's: non-blocking
    except OSError:  # BlockingIOError: nothing sent
        return False


class _Waiting:
    """A socket waiting for a request head: in its handshake, or handed off and waiting for its next request.

    Counted in ``Server._pending`` from :meth:`Server._begin_handshake` to
    :meth:`Server._end_handshake`; until its head is complete (``silent``), it is also in the
    server's queues of silent sockets (all, and per peer), oldest first.
    """

    __slots__ = ("evicted", "greenlet", "peer", "silent", "since")

    def __init__(self, peer: str, since: float) -> None:
        self.peer = peer
        self.since = since
        self.greenlet: Any = None  # the greenlet that waits, once it runs
        self.silent = True
        self.evicted = False


class _KeepAliveWaits:
    """The :class:`~ignitia_sync.hosting.pywsgi_fallback.HeadWaits` of one handed-off connection: each wait is counted."""

    __slots__ = ("_peer", "_server", "_waiting")

    def __init__(self, server: Server, peer: str) -> None:
        self._server = server
        self._peer = peer
        self._waiting: _Waiting | None = None

    def begin(self) -> None:
        self._waiting = self._server._begin_handshake(self._peer)
        self._waiting.greenlet = gevent.getcurrent()

    def end(self) -> None:
        if self._waiting is not None:
            self._server._end_handshake(self._waiting)
            self._waiting = None


class Server(Host):
    """Serves a :class:`Router`'s WebSocket routes, one greenlet per connection.

    A :class:`~ignitia_sync.hosting.host.Host`: it listens, reads request heads (inside
    ``handshake_timeout``, TLS included), hands plain HTTP to ``wsgi_app``, and stops; every
    check of an upgrade and everything after it is the host's.

    Args:
        app: the router.
        address: ``(host, port)``; port 0 picks a free port (see :attr:`address`).
        settings: a :class:`ServerSettings` (typed, for mypy users), or None.
        **overrides: any field of :class:`ServerSettings`, over ``settings``.

    Example:
        >>> server = Server(Router(), ("127.0.0.1", 0), max_message_size=65536)
        >>> server.settings.max_message_size
        65536
    """

    def __init__(
        self,
        app: Router,
        address: tuple[str, int] = ("127.0.0.1", 3000),
        settings: ServerSettings | None = None,
        *,
        wsgi_app: Callable[..., Any] | None = None,
        **overrides: Any,
    ) -> None:
        self.app = app
        #: The WSGI application that answers every request that is not an upgrade to
        #: one of ``app``'s routes (a Flask app, Django's WSGI handler); None: 404/426.
        self.wsgi_app = wsgi_app
        self._wsgi: PywsgiFallback | None = None
        if settings is None:
            settings = ServerSettings(**overrides)
        elif overrides:
            settings = dataclasses.replace(settings, **overrides)
        super().__init__(
            settings, trusted_proxies=tuple(settings.forwarded_allow_ips) if settings.trust_forwarded else None
        )
        self.settings: ServerSettings = settings
        self._requested_address = address
        self._stream: Listener | None = None
        self._handlers = gevent.pool.Group()
        self._stopped: gevent.event.Event | None = None
        self._stopping = False
        self._hub: HubRef | None = None  # the hub (and OS thread) it runs in, once started
        self._thread: threading.Thread | None = None
        self._tls: ssl.SSLContext | None = None
        self._pending = 0  # sockets waiting for a request head (handshakes, kept-alive WSGI connections)
        self._silent: OrderedDict[_Waiting, None] = OrderedDict()  # those with no complete head yet, oldest first
        self._silent_per_ip: dict[str, OrderedDict[_Waiting, None]] = {}  # the same per peer address
        self._wake: Any = None  # the timer that lets a held listener look again once the oldest is stale
        # stop() also stops the WebSocket routes of the WSGI app it served (their hosts add
        # themselves through the fallback's environ, HOSTS_KEY); other hosts of the process are
        # not ours. A TestClient clears the flag: the same app is served again by the next test.
        self._stops_wsgi_hosts = True
        self._wsgi_hosts: weakref.WeakSet[Host] = weakref.WeakSet()
        self._targets = RouteTargets(self.settings.connection_settings(), app)
        #: Where the metrics are served (``metrics``), and the WSGI app that answers there and
        #: hands the rest to ``wsgi_app``; metrics need their extra: the one-line error is raised here.
        self._metrics_path: str | None = None
        self._fallback_app = wsgi_app
        if settings.metrics:
            from ..metrics import exposition

            self._metrics_path = settings.metrics if isinstance(settings.metrics, str) else "/metrics"
            metrics = exposition.wsgi_app(tuple(settings.metrics_allow))
            self._fallback_app = exposition.mount(self._metrics_path, metrics, wsgi_app)

    # -- life cycle -----------------------------------------------------------------

    def start(self, *, listen: bool = True) -> None:
        """Bind and start accepting in the background of the current hub; returns at once.

        With ``listen=False`` nothing is bound: connections come only through
        :meth:`serve_socket` (what :class:`~ignitia_sync.testing.TestClient` does).
        """
        if self._stopped is not None:
            return
        context = self.settings.ssl_context
        if context is None and self.settings.certfile:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.options |= ssl.OP_NO_RENEGOTIATION
            context.load_cert_chain(self.settings.certfile, self.settings.keyfile)
        if context is not None:
            import ssl

            context.options |= ssl.OP_NO_RENEGOTIATION  # also on a context the user gave
        # TLS is set up per connection in _upgrade, inside handshake_timeout, with gevent's
        # SSLSocket (a stdlib one would block the hub); the listener itself is plain.
        self._tls = context
        if listen:
            self._stream = Listener(
                self._requested_address, self._handle, backlog=self.settings.backlog,
                full=self._full, admit=self._accepted,
            )
            self._stream.start()
        if self._fallback_app is not None:
            self._wsgi = PywsgiFallback(
                self._fallback_app, self.address, https=self._tls is not None, head_timeout=self.settings.handshake_timeout
            )
            self._wsgi.environ[HOSTS_KEY] = self._wsgi_hosts  # shared by every request's copy
        self._hub = HubRef()  # before _stopped: a started server always has one
        self._stopped = gevent.event.Event()
        self.registry.attach(self._hub.loop)
        self.watch_blocking()
        if listen:
            log.info("listening on %s:%d", *self.address[:2])

    def serve_socket(self, sock: socket.socket, address: tuple[Any, ...]) -> gevent.Greenlet[Any, Any]:
        """Serve one connection accepted elsewhere: handshake, limits, routing, everything after.

        Call it in the server's thread, after :meth:`start`; the connection is served in
        a new greenlet (returned), counted and stopped with the others.

        Example:
            >>> import gevent.socket
            >>> server = Server(Router(), ("127.0.0.1", 0))
            >>> server.start(listen=False)
            >>> ours, theirs = gevent.socket.socketpair()
            >>> _ = server.serve_socket(theirs, ("127.0.0.1", 50000))
            >>> ours.sendall(b"GET /nowhere HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            >>> ours.recv(100).split(b"\\r\\n")[0]
            b'HTTP/1.1 404 Not Found'
            >>> server.stop()
        """
        if self._stopped is None:
            raise RuntimeError("start() the server before serve_socket()")
        waiting = self._begin_handshake(str(address[0]) if address else "")
        if self._pending > self.settings.max_pending_handshakes and self._hub is not None:
            self._hub.loop.run_callback(self._make_room)
        return gevent.spawn(self._handle, sock, address, waiting)

    def serve_forever(self) -> None:
        """Start if needed and block until :meth:`stop` is called.

        In the main thread (and unless ``handle_signals=False``), SIGTERM and SIGINT stop
        the server as :meth:`stop` does, and this returns normally once it has stopped.
        """
        self.start()
        assert self._stopped is not None
        installed = self._install_signal_handlers()
        try:
            self._stopped.wait()
        finally:
            for handler in installed:
                handler.cancel()

    def ignitia(self) -> None:
        """Serve until stopped: the guide's ``server.ignitia().await`` (see :meth:`serve_forever`)."""
        self.serve_forever()

    def _install_signal_handlers(self) -> list[Any]:
        if not self.settings.handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):

            def on_signal(signum: int = signum) -> None:
                log.info("%s: stopping", signal.Signals(signum).name)
                gevent.spawn(self.stop)

            installed.append(gevent.signal_handler(signum, on_signal))
        return installed

    def start_in_thread(self, timeout: float = 10.0) -> None:
        """Serve from a new OS thread with its own gevent hub; returns once bound.

        Handy beside a Flask or Django app, and in tests. :meth:`stop` may be called from
        any thread. In a monkey-patched program this is the same as :meth:`start`.
        """
        if gevent.monkey.is_module_patched("threading"):
            self.start()
            return
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                self.start()
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
                return
            finally:
                ready.set()
            assert self._stopped is not None
            self._stopped.wait()
            # This thread's hub ends with it: close the loop and its file descriptors.
            gevent.get_hub().destroy(destroy_loop=True)

        self._thread = threading.Thread(target=serve, name="ignitia-sync-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the server thread did not start in time")
        if failure:
            raise failure[0]

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` once started, else the requested one."""
        if self._stream is None:
            return self._requested_address
        host, port = self._stream.server_host, self._stream.server_port
        assert host is not None and port is not None
        return host, port

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let handlers see :attr:`shutdown_event`, then close with 1001.

        Handlers get ``shutdown_grace`` seconds to finish by themselves; then every
        connection sends what is queued to it and is closed with 1001 "Server shutdown".
        Upgrades that arrive meanwhile get 503.

        Handlers still running after ``timeout`` seconds (default ``shutdown_timeout``)
        are killed. Idempotent, and safe to call from any thread. Called from a handler
        (an admin "shutdown" route, say), it starts the shutdown and returns at once:
        that handler is one of those being stopped.
        """
        if self._stopped is None or self._stopped.is_set():
            return
        hub = self._hub
        assert hub is not None  # set by start(), with _stopped
        if not hub.owns():
            done = threading.Event()
            if not hub.spawn_soon(self._stop_then, timeout, done):
                # Its loop is gone: its thread ended, having stopped it (a race with another stop()).
                if not self._stopped.is_set():
                    log.warning("stop(): the server's hub is gone, and it was never stopped")
            elif not done.wait((timeout or self.settings.shutdown_timeout) + self.settings.shutdown_grace + 15):
                log.warning("stop(): the server's thread did not finish stopping in time")
            if self._thread is not None:
                self._thread.join(5)
            return
        if cast(Any, gevent.getcurrent()) in self._handlers:
            gevent.spawn(self._stop_here, timeout)
            return
        self._stop_here(timeout)
        assert self._stopped is not None
        if not self._stopped.is_set():  # another greenlet is stopping it: wait for the end
            self._stopped.wait()

    def _stop_then(self, timeout: float | None, done: threading.Event) -> None:
        try:
            self._stop_here(timeout)
        finally:
            done.set()

    def _served_wsgi_hosts(self) -> list[Host]:
        """The WSGI app's hosts this server stops: those that served a WebSocket through it, and
        those a view attached to this server's hub (a broadcast from an HTTP request: its
        backplane runs here) without serving one. Other hosts of the process are not ours."""
        assert self._hub is not None
        loop = self._hub.loop
        ours = set(self._wsgi_hosts)
        for host in hosts():
            hub = host.registry._hub
            if host.ends_with_process and hub is not None and hub.loop is loop:
                ours.add(host)
        return list(ours)

    def _stop_here(self, timeout: float | None) -> None:
        if self._stopping or self._stopped is None:
            return
        self._stopping = True
        if self._stream is not None:
            self._stream.close()
        assert self._hub is not None  # started
        for waiting in list(self._silent):  # no head yet: nothing to finish, so nothing to wait for
            self._hub.loop.run_callback(self._evict, waiting)  # from the hub, as every eviction
        if self._wake is not None:
            self._wake.close()
            self._wake = None
        self._begin_shutdown()
        if len(self.registry):  # handlers that watch the event may finish by themselves
            self._handlers.join(timeout=min(self.settings.shutdown_grace, self.settings.shutdown_timeout))
        self.registry.close_all(1001, "Server shutdown")  # each sends its queue first; never blocks
        if self._stops_wsgi_hosts:
            for host in self._served_wsgi_hosts():
                if not host.shutting_down:
                    try:
                        host.registry.call_threadsafe(host.shutdown, 1001, "Server shutdown")
                    except ValueError:  # its hub is gone: nothing of it runs to shut down
                        log.warning("a WSGI host whose hub is gone was not shut down")
        self._handlers.join(timeout=self.settings.shutdown_timeout if timeout is None else timeout)
        # Handlers still running are killed; each one's connection is torn down and
        # accounted for as its greenlet unwinds.
        self._handlers.kill(block=True, timeout=self.settings.close_timeout + 2)
        self.registry.backplane.close()
        if self._watch is not None:
            self._watch.release()  # another host of this hub may still want it
            self._watch = None
        log.info("stopped")
        assert self._stopped is not None
        self._stopped.set()

    def __enter__(self) -> Server:
        if self._hub is None:
            self.start_in_thread()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- one connection ---------------------------------------------------------------

    def _handle(self, sock: socket.socket, address: tuple[Any, ...], waiting: _Waiting) -> None:
        self._handlers.add(cast(Any, gevent.getcurrent()))
        waiting.greenlet = gevent.getcurrent()
        upgraded = None
        try:
            if waiting.evicted:  # made room for another before it ever ran: it has sent nothing
                self._refuse(sock, address, None, _Evicted(), heard=False)
            else:
                upgraded = self._upgrade(sock, address, waiting)
        finally:
            self._end_handshake(waiting)
            if upgraded is None:
                sock.close()
        if isinstance(upgraded, HandOff):
            assert self._wsgi is not None  # a hand-off only when there is a WSGI app
            try:
                self._wsgi.serve(upgraded, address, _KeepAliveWaits(self, waiting.peer))
            except _Evicted:  # idle in keep-alive while the place was needed, or at the stop: closed
                log.debug("closed an idle connection from %s%s", waiting.peer,
                          "" if self._stopping else " to make room")
        elif upgraded is not None:  # served from here: each call level is stack kept while it waits
            opening, sock, data = upgraded  # not serve(*upgraded): a call with *args nests the C stack,
            self.serve(opening, sock, data)  # which gevent copies aside (~800 B) while the handler waits

    # -- sockets waiting for a request head: the pending-handshake caps -------------------

    def _accepted(self, sock: socket.socket, address: tuple[Any, ...]) -> _Waiting:
        """Count a socket the listener just accepted (in the hub, before its greenlet exists).

        Accepted at the cap (the oldest silent socket was stale, see :meth:`_full`): that
        oldest one makes room.
        """
        waiting = self._begin_handshake(str(address[0]) if address else "")
        if self._pending > self.settings.max_pending_handshakes:
            self._make_room()
        return waiting

    def _begin_handshake(self, peer: str) -> _Waiting:
        """Count a socket that starts waiting for a request head; never refuses it.

        Past ``max_pending_handshakes_per_ip`` silent ones from ``peer``, the oldest is closed
        (from the hub, soon): the newcomer takes its place.
        """
        now = time.monotonic()
        waiting = _Waiting(peer, now)
        self._pending += 1
        self._silent[waiting] = None
        if not self.settings.trust_forwarded:
            group = self._silent_per_ip.get(peer)
            if group is None:
                group = self._silent_per_ip[peer] = OrderedDict()
            group[waiting] = None
            if len(group) > self.settings.max_pending_handshakes_per_ip and self._hub is not None:
                oldest = next(iter(group))
                if oldest.since <= now - self.settings.handshake_grace:
                    self._hub.loop.run_callback(self._evict_silent_from, peer)
        return waiting

    def _head_read(self, waiting: _Waiting) -> None:
        """The socket has sent its whole request head: no longer silent (still pending)."""
        if not waiting.silent:
            return
        waiting.silent = False
        del self._silent[waiting]
        group = self._silent_per_ip.get(waiting.peer)
        if group is not None:
            del group[waiting]
            if not group:
                del self._silent_per_ip[waiting.peer]

    def _end_handshake(self, waiting: _Waiting) -> None:
        """The socket no longer waits for a head: its place is free (and a held listener accepts again)."""
        self._head_read(waiting)
        self._pending -= 1
        if self._stream is not None and self._stream.held and self._pending < self.settings.max_pending_handshakes:
            self._stream.resume()

    def _full(self) -> bool:
        """Asked by the listener before each accept (in the hub): hold it at ``max_pending_handshakes``.

        At the cap it accepts on only when the oldest silent socket has been silent for
        ``handshake_grace``: a socket accepted then takes its place (:meth:`_accepted`).
        Otherwise the listener is held until a place frees, or until that oldest one has
        been silent long enough (a timer).
        """
        if self._pending < self.settings.max_pending_handshakes or self._stopping:
            return False
        oldest = next(iter(self._silent), None)
        if oldest is None:  # every pending one is past its head (in middleware): wait for one to end
            return True
        wait = oldest.since + self.settings.handshake_grace - time.monotonic()
        if wait <= 0:
            return False
        if self._wake is None:
            self._wake = gevent.get_hub().loop.timer(wait)
            self._wake.start(self._look_again)
        return True

    def _make_room(self) -> None:
        """In the hub, over the cap: close the oldest silent socket if it has been silent for the grace."""
        oldest = next(iter(self._silent), None)
        if (
            self._pending > self.settings.max_pending_handshakes
            and oldest is not None
            and oldest.since <= time.monotonic() - self.settings.handshake_grace
        ):
            self._evict(oldest)

    def _look_again(self) -> None:
        if self._wake is not None:
            self._wake.close()
            self._wake = None
        if self._stream is not None:
            self._stream.resume()  # full() is asked again before the next accept

    def _evict_silent_from(self, peer: str) -> None:
        """In the hub: close ``peer``'s oldest silent socket while it holds the per-address cap of them."""
        group = self._silent_per_ip.get(peer)
        if group is None:
            return
        cap, limit = self.settings.max_pending_handshakes_per_ip, time.monotonic() - self.settings.handshake_grace
        stale = 0
        for waiting in group:  # oldest first: the stale ones are a prefix
            if waiting.since > limit:
                return
            stale += 1
            if stale >= cap:  # a newcomer came while it held this many: the oldest makes room
                self._evict(next(iter(group)))
                return

    def _evict(self, waiting: _Waiting) -> None:
        """In the hub: close a silent socket (503 to a started request head; nothing to a socket that
        has sent nothing, nor to an idle kept-alive one)."""
        self._head_read(waiting)  # out of the queues now: it is not chosen twice
        waiting.evicted = True
        greenlet = waiting.greenlet
        if greenlet is not None and not greenlet.dead:
            greenlet.throw(_Evicted())  # at its read; it unwinds, ends its handshake, returns here

    def _upgrade(
        self, sock: socket.socket, address: tuple[Any, ...], waiting: _Waiting
    ) -> tuple[Opening, socket.socket, bytes] | HandOff | None:
        """Read the request head (inside ``handshake_timeout``), route it, and open it.

        Returns the socket (TLS-wrapped when serving ``wss://``), the opening and the bytes
        read past the head; a hand-off for the WSGI app; or None once refused (answered,
        counted, logged) or abandoned by the client.
        """
        settings = self.settings
        reader = RequestHeadReader(settings.max_request_head, address)
        request: Request | None = None
        heard = False  # any byte of a request head yet (only then may an answer be written)
        try:
            with gevent.Timeout(settings.handshake_timeout):
                if self._tls is not None:
                    sock = gevent.ssl.SSLSocket(
                        sock=sock, server_side=True, do_handshake_on_connect=False, _context=self._tls
                    )
                    sock.do_handshake()
                received: list[bytes] = []  # replayed to the WSGI app if the request is its
                while request is None:
                    data = sock.recv(8192)
                    if not data:
                        sock.close()
                        return None
                    heard = True
                    if self._wsgi is not None:
                        received.append(data)
                    try:
                        request = reader.feed(data)
                    except HandshakeError:
                        if self.wsgi_app is None:
                            raise
                        return HandOff(sock, b"".join(received))  # not ours: pywsgi answers
                self._head_read(waiting)  # not silent any more: never closed to make room
                found = self.app.match(request.path)
                if (
                    self._wsgi is not None
                    and (found is None or "websocket" not in request.headers.tokens("upgrade"))
                    and (self.wsgi_app is not None or request.path == self._metrics_path)
                ):
                    return HandOff(sock, b"".join(received))
                if found is None:
                    if self._stopping:
                        raise HandshakeError(503, "server shutting down", (("Retry-After", "1"),))
                    raise HandshakeError(404, "no WebSocket route for this path")
                route, params = found
                request = request.routed(params, client_ip(request, self.trusted_proxies))
                opening = self.open(request, self._targets.of(route, params))
        except BaseException as exc:
            self._refuse(sock, address, request, exc, heard=heard)
            return None
        return opening, sock, reader.trailing_data

    def _refuse(
        self, sock: socket.socket, address: tuple[Any, ...], request: Request | None, exc: BaseException,
        *, heard: bool,
    ) -> None:
        """Answer and log a failed handshake (throttled), close its socket; re-raise the rest.

        ``heard``: the client has sent part of a request head. One that has sent nothing (nor
        has bytes waiting to be read) is closed without an answer: a browser's preconnected
        socket would read a 503 written there as the answer to the request it sends later,
        even to another server on the port.
        """
        peer = address[0] if address else "-"
        if isinstance(exc, HandshakeError):
            self.refused(request, exc, peer)
            try:
                sock.sendall(error_response(exc.status, exc.body, exc.headers))
            except OSError:
                pass
        elif isinstance(exc, _Evicted):
            if self._stopping:
                reason, retry = "server shutting down", "1"
            else:
                reason, retry = "too many pending handshakes", "5"
                self._refusal_log.log("closed a silent handshake from %s: %s", peer, reason)
            if self._tls is None and (heard or _has_bytes_waiting(sock)):  # never plain bytes in TLS
                try:  # one non-blocking attempt: it may not be reading
                    if sock._sock.send(error_response(503, reason, (("Retry-After", retry),))):  # type: ignore[attr-defined]
                        self._stats.refused(503)
                except (OSError, AttributeError):
                    pass
        elif isinstance(exc, gevent.Timeout):
            self._refusal_log.log(
                "handshake from %s timed out after %.1fs", peer, self.settings.handshake_timeout
            )
        elif isinstance(exc, OSError):  # ssl.SSLError included
            log.debug("handshake from %s failed: %s", peer, exc)
        else:
            sock.close()
            raise exc
        sock.close()


def routes_of(app: Any) -> list[str]:
    """The WebSocket route patterns ``app`` serves, where they can be listed.

    A :class:`Router`, a ``WebSocketMiddleware`` (its ``router``), a Flask app (its ``Sock``
    rules); anything else: none.

    Example:
        >>> routes_of(Router().websocket("/chat/:room", lambda ws, room: None))
        ['/chat/:room']
    """
    if isinstance(app, Router):
        return [route.pattern for route in app.routes]
    patterns: list[str] = []
    router = getattr(app, "router", None)
    if isinstance(router, Router):  # WebSocketMiddleware
        patterns += [route.pattern for route in router.routes]
    url_map = getattr(app, "url_map", None)  # Flask: Sock's routes are websocket rules
    for rule in getattr(url_map, "iter_rules", lambda: [])():
        if getattr(rule, "websocket", False):
            patterns.append(rule.rule)
    return patterns


def routes_line(app: Any, *, wsgi: bool = False) -> str:
    """The start-up line naming ``app``'s WebSocket routes (``ignitia-sync`` and :func:`run`).

    ``wsgi``: ``app`` is a WSGI application, whose routes may not be listable.

    Example:
        >>> routes_line(Router().websocket("/echo", lambda ws: None))
        'WebSocket routes: /echo'
        >>> routes_line(Router())
        'WebSocket routes: none (register some with router.websocket(path, handler))'
    """
    patterns = routes_of(app)
    if patterns:
        return "WebSocket routes: " + ", ".join(patterns)
    if wsgi:
        return "WebSocket routes: those of the WSGI application (plain HTTP goes to it too)"
    return "WebSocket routes: none (register some with router.websocket(path, handler))"


def run(app: Router, argv: Sequence[str] | None = None, **settings: Any) -> None:
    """Serve ``app`` from a script: parses ``--host``/``--port``, stops on SIGINT/SIGTERM.

    At start-up it logs the routes (:func:`routes_line`, INFO on ``ignitia_sync.server``) and
    which path does the frame work (the C accelerator or Python: ``framing.describe()``).

    Example (the last line of every example)::

        if __name__ == "__main__":
            run(app)
    """
    parser = argparse.ArgumentParser(description="Serve an ignitia_sync app.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    server = Server(app, (args.host, args.port), **settings)
    server.start()
    host, port = server.address
    print(f"WebSocket server running on ws://{host}:{port}", flush=True)
    log.info("%s", routes_line(app, wsgi=settings.get("wsgi_app") is not None))
    log.info("%s", framing.describe())
    server.serve_forever()
