"""WebSockets inside a WSGI application, on the same port: ``WebSocketMiddleware(app, router)``.

Upgrade requests for one of the router's routes become WebSocket connections (our
handshake, limits, middleware, registry); every other request goes to ``app`` untouched.
The socket is taken over from the WSGI server that runs the app:

* gunicorn with ``-k gevent`` (``environ["gunicorn.socket"]``; bytes the client sent right
  after the head are taken from gunicorn's read buffer);
* gevent's ``pywsgi`` (the socket under ``environ["wsgi.input"]``, with its buffer);
* Werkzeug's development server (``environ["werkzeug.socket"]``, what ``flask run`` uses)
  and Django's ``runserver`` with ``"ignitia_sync.django"`` in ``INSTALLED_APPS``
  (``environ["ignitia_sync.socket"]``, the key any server can set to hand its socket over):
  threaded servers, where each connection is served in its own thread and hub;
* anything else that gives no socket (uWSGI, mod_wsgi) gets a 500 and one log line that
  says what to run instead.

Example:
    >>> from ignitia_sync import Router
    >>> def hello(environ, start_response):
    ...     start_response("200 OK", [("Content-Type", "text/plain")])
    ...     return [b"hello"]
    >>> router = Router().websocket("/ws/echo", lambda ws: [ws.send(m) for m in ws])
    >>> app = WebSocketMiddleware(hello, router)
"""

from __future__ import annotations

import atexit
import dataclasses
import io
import logging
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple
from wsgiref.util import is_hop_by_hop

import gevent
import gevent.event
import gevent.socket
from gevent._hub_local import get_hub_if_exists  # no public name; stable since gevent 1.3

from .connection import WebSocketConnection
from .exceptions import HandshakeError
from .handlers import Handler
from .handshake import accept
from .http import Request, _reason, check_header, client_ip, escape_for_log
from .middleware import Middleware, RateLimit, message_filter, run_middleware
from .registry import Backplane, Registry, backplane_from
from .router import Router, RouteSettings
from .session import log_access, serve_connection
from .settings import ConnectionSettings
from .stats import ConnectionStats
from .transport import gevent_socket

__all__ = [
    "READER_KEY", "SOCKET_KEY", "Refused", "Served", "SocketTakenOver", "TakenSocket", "WebSocketHost",
    "WebSocketMiddleware", "shutdown_all", "take_socket",
]

log = logging.getLogger("ignitia_sync.wsgi")

_live: weakref.WeakSet[WebSocketHost] = weakref.WeakSet()
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
#: The environ key where a WSGI server can put the client's socket for us to take over
#: (our Django ``runserver`` does); ``"ignitia_sync.reader"`` may hold its buffered reader.
SOCKET_KEY = "ignitia_sync.socket"
READER_KEY = "ignitia_sync.reader"


class WebSocketHost:
    """What every WSGI-side host of WebSockets shares: settings, a registry, shutdown.

    :class:`WebSocketMiddleware` and :class:`ignitia_sync.flask.Sock` are hosts; each
    upgrade goes through :meth:`upgrade`. :func:`shutdown_all` closes every host's
    connections (the gunicorn worker and ``ignitia-sync`` call it when they stop).

    Args:
        settings: per-connection settings; ``**overrides`` change single fields.
        trusted_proxies: with these proxy addresses, the client IP comes from their
            forwarding headers (see :func:`~ignitia_sync.http.client_ip`).
        backplane: carries broadcasts and ``send_to`` to the other processes (a
            :class:`~ignitia_sync.redis.RedisBackplane` or its URL); this process only by default.

    Example:
        >>> host = WebSocketHost(max_message_size=65536)
        >>> host.settings.max_message_size, len(host.registry)
        (65536, 0)
    """

    def __init__(
        self,
        *,
        settings: ConnectionSettings | None = None,
        trusted_proxies: Iterable[str] = (),
        backplane: Backplane | str | None = None,
        **overrides: Any,
    ) -> None:
        base = settings if settings is not None else ConnectionSettings()
        self.settings = dataclasses.replace(base, **overrides) if overrides else base
        self.trusted_proxies = tuple(trusted_proxies)
        #: Every open WebSocket of this host in this process (rooms, broadcast, ``get``).
        self.registry = Registry(backplane_from(backplane))
        #: Set by :meth:`shutdown`; handlers see it as ``ws.shutting_down``.
        self.shutdown_event = gevent.event.Event()
        self._stats = ConnectionStats()
        self._serving = 0  # upgrades being served; the backplane closes after the last one
        self._serving_lock = threading.Lock()
        _live.add(self)

    def stats(self) -> dict[str, Any]:
        """This process's counters for this host: the same figures as ``Server.stats()``.

        Example:
            >>> WebSocketHost().stats()["open_connections"]
            0
        """
        return {
            **self._stats.snapshot(self.registry),
            "shutting_down": self.shutdown_event.is_set(),
            "backplane": self.registry.backplane.stats(),
        }

    def shutdown(self, code: int = 1001, reason: str = "Server shutdown") -> None:
        """Set :attr:`shutdown_event` and close every open connection (each sends its queue first).

        The backplane closes once the last handler has returned, so that what handlers
        broadcast while they wind down (a "left the room") still reaches other processes.

        Call it from the serving hub (the gunicorn worker does); from another thread use
        ``host.registry.call_threadsafe(host.shutdown)``.
        """
        with self._serving_lock:  # no upgrade slips in between the check and the count
            self.shutdown_event.set()
            idle = not self._serving
        self.registry.close_all(code, reason)
        if idle:
            self.registry.backplane.close()

    def _served(self) -> None:
        """An upgrade's handler has returned: after the last one of a shutdown, close the backplane."""
        with self._serving_lock:
            self._serving -= 1
            last = not self._serving
        if last and self.shutdown_event.is_set():
            self.registry.backplane.close()

    def _closed(self, ws: WebSocketConnection) -> None:
        self._stats.closed(ws)
        log_access(ws)

    def upgrade(
        self,
        environ: dict[str, Any],
        handler: Handler,
        params: Mapping[str, Any],
        *,
        options: ConnectionSettings | None = None,
        middleware: Iterable[Middleware] = (),
        rate_limit: RateLimit | None = None,
        connection_class: type[WebSocketConnection] = WebSocketConnection,
    ) -> Upgraded:
        """Upgrade the request of ``environ`` and serve it with ``handler`` until it closes.

        Returns what the WSGI application must return: the server-specific "already
        answered" value after a connection, or a refusal (status, headers, body) before it.
        """
        options = options or self.settings
        request = Request.from_environ(environ)
        request = request.routed(params, client_ip(request, self.trusted_proxies or None))
        had_hub = get_hub_if_exists() is not None
        with self._serving_lock:  # counted from here, so that shutdown() cannot miss this one
            stopping = self.shutdown_event.is_set()
            if not stopping:
                self._serving += 1
        try:
            if stopping:
                raise HandshakeError(503, "server shutting down", (("Retry-After", "1"),))  # another worker will take it
            accepted = accept(request, options)
            attached = run_middleware(middleware, request)
            taken = take_socket(environ)
        except BaseException as exc:
            if not stopping:
                self._served()
            if not isinstance(exc, HandshakeError):
                raise
            log.info(
                "refused %s from %s: %d %s", escape_for_log(request.path), request.client_ip,
                exc.status, escape_for_log(exc.body),
            )
            self._stats.refused(exc.status)
            return Refused(exc)
        if taken.threaded and not self.registry.threaded:
            self.registry.serve_from_threads()
            _close_at_exit(self)
        elif not self.registry._attached:
            self.registry.attach()  # the worker's hub, on first use
        try:
            taken.sock.sendall(accepted.response)
            self._stats.opened()
            ws = connection_class(
                taken.sock,
                request,
                accepted.protocol,
                subprotocol=accepted.subprotocol,
                settings=options,
                initial_data=taken.buffered,
                shutdown_event=self.shutdown_event,
            )
            ws.extensions = attached
            if rate_limit is not None:
                ws._filter = message_filter(rate_limit, ws)
            serve_connection(ws, handler, params, registry=self.registry, on_closed=self._closed)
        except OSError:  # the client left before the 101 was written
            taken.sock.close()
        finally:
            self._served()
            if taken.threaded and not had_hub:  # this request's thread ends: free its loop's descriptors
                gevent.get_hub().destroy(destroy_loop=True)
        return Served(taken.finish)


class Served(NamedTuple):
    """An upgrade that was served: the WSGI application returns ``finish()``.

    ``finish`` tells the WSGI server that the response is written and the connection must
    not be reused; under gunicorn it raises StopIteration (what gunicorn's async workers
    take as "close this connection"), so call it last, from the WSGI callable itself.
    """

    finish: Callable[[], Iterable[bytes]]


class Refused(NamedTuple):
    """An upgrade refused before the 101: answer with :meth:`respond`."""

    error: HandshakeError

    def respond(self, start_response: StartResponse) -> Iterable[bytes]:
        """Write the refusal through ``start_response``; returns the body."""
        return _refusal(start_response, self.error)


Upgraded = Served | Refused


def shutdown_all(code: int = 1001, reason: str = "Server shutdown") -> None:
    """:meth:`WebSocketHost.shutdown` every host of this process, each in its own thread.

    Example:
        >>> shutdown_all()
    """
    for host in list(_live):
        host.registry.call_threadsafe(host.shutdown, code, reason)


_EXIT_GRACE = 2.0  # seconds a threaded development server's exit waits for the 1001s


def _close_at_exit(host: WebSocketHost) -> None:
    """On a threaded development server, close the host's WebSockets with 1001 at exit.

    Werkzeug's and Django's reloaders restart by exiting the process, and Ctrl-C exits
    it too; their request threads are daemons, which would vanish without a Close (1006).
    ``atexit`` runs while they still run: each connection gets its 1001 first.
    """
    if _at_exit_hosts:
        _at_exit_hosts.add(host)
        return
    _at_exit_hosts.add(host)

    def close_all() -> None:
        for each in list(_at_exit_hosts):
            each.shutdown()
        deadline = time.monotonic() + _EXIT_GRACE
        while any(len(each.registry) for each in _at_exit_hosts) and time.monotonic() < deadline:
            time.sleep(0.02)

    atexit.register(close_all)


_at_exit_hosts: weakref.WeakSet[WebSocketHost] = weakref.WeakSet()


class WebSocketMiddleware(WebSocketHost):
    """Wrap a WSGI ``app``: the router's WebSocket routes here, everything else there.

    Args:
        app: any WSGI application (a Flask app, Django's ``get_wsgi_application()``).
        router: the WebSocket routes (a new, empty :class:`~ignitia_sync.router.Router`
            by default: add routes with ``middleware.router.websocket(...)``).
        **host_options: ``settings``, ``trusted_proxies`` and settings fields, as for
            :class:`WebSocketHost`.

    Example:
        >>> app = WebSocketMiddleware(lambda environ, start_response: [], Router())
        >>> app.router.routes
        []
    """

    def __init__(self, app: WSGIApp, router: Router | None = None, **host_options: Any) -> None:
        super().__init__(**host_options)
        self.app = app
        self.router = router if router is not None else Router()
        self._route_settings = RouteSettings(self.settings)

    @classmethod
    def shutdown_all(cls, code: int = 1001, reason: str = "Server shutdown") -> None:
        """The module's :func:`shutdown_all` (every host of the process, not only middlewares)."""
        shutdown_all(code, reason)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI entry point."""
        if "websocket" not in environ.get("HTTP_UPGRADE", "").lower():
            return self.app(environ, start_response)
        found = self.router.match(Request.from_environ(environ).path)
        if found is None:
            return self.app(environ, start_response)
        route, params = found
        outcome = self.upgrade(
            environ, route.handler, params, options=self._route_settings.of(route),
            middleware=(*self.router.global_middleware, *route.middleware), rate_limit=route.rate_limit,
        )
        if isinstance(outcome, Refused):
            return outcome.respond(start_response)
        return outcome.finish()


class TakenSocket(NamedTuple):
    """The client's socket, taken over from the WSGI server (see :func:`take_socket`).

    Example::

        taken = take_socket(environ)
        if taken.threaded:          # Werkzeug, runserver: this request's own thread and hub
            registry.serve_from_threads()
    """

    #: The connection's socket, ours to use and close.
    sock: socket.socket
    #: What the client sent after the request head that the server had already read.
    buffered: bytes
    #: Returns what the WSGI application must return so the server writes nothing more
    #: and does not reuse the connection (under gunicorn it raises StopIteration).
    finish: Callable[[], Iterable[bytes]]
    #: The server runs each request in its own OS thread (one hub per connection).
    threaded: bool


def take_socket(environ: dict[str, Any]) -> TakenSocket:
    """Take the client's socket from the WSGI server that called the application.

    Raises:
        HandshakeError: 500, this server does not hand out its sockets.

    Example (in a WSGI application, after the handshake was checked)::

        taken = take_socket(environ)
        taken.sock.sendall(response_head)
        ...
        return taken.finish()
    """
    gunicorn_socket = environ.get("gunicorn.socket")
    if gunicorn_socket is not None:
        return _from_gunicorn(environ, gunicorn_socket)
    for key in ("werkzeug.socket", SOCKET_KEY):
        server_socket = environ.get(key)
        if server_socket is not None:
            return _from_threaded_server(environ, server_socket)
    stream = environ.get("wsgi.input")
    raw = getattr(getattr(stream, "raw", None), "_sock", None)
    if isinstance(raw, gevent.socket.socket) and "gevent" in str(environ.get("SERVER_SOFTWARE", "")).lower():
        return TakenSocket(raw, _drain_buffer(stream, raw), lambda: [], threaded=False)
    log.error(
        "WebSocket upgrade on %s, which does not hand its sockets to the application: "
        "serve the app with `ignitia-sync MODULE:app`, `gunicorn -k gevent`, or gevent.pywsgi",
        escape_for_log(str(environ.get("SERVER_SOFTWARE", "this WSGI server"))),
    )
    raise HandshakeError(500, "this server cannot upgrade to WebSocket")


def _from_gunicorn(environ: dict[str, Any], sock: Any) -> TakenSocket:
    if not isinstance(sock, gevent.socket.socket):
        log.error("gunicorn must run with the gevent worker (-k gevent) to serve WebSockets")
        raise HandshakeError(500, "this server cannot upgrade to WebSocket")
    buffered = b""
    unreader = getattr(getattr(environ.get("wsgi.input"), "reader", None), "unreader", None)
    buf = getattr(unreader, "buf", None)
    if isinstance(buf, io.BytesIO):  # what gunicorn read past the head
        buffered = buf.getvalue()
        setattr(unreader, "buf", io.BytesIO())  # noqa: B010 (gunicorn's unreader, untyped)
    return TakenSocket(sock, buffered, _close_gunicorn_connection, threaded=False)


def _close_gunicorn_connection() -> Iterable[bytes]:
    # gunicorn's async workers end a keep-alive connection on StopIteration from the app
    # (its ALREADY_HANDLED sentinel no longer stops the keep-alive loop in gunicorn 23+).
    raise StopIteration("the WebSocket has ended; this connection is not reused")


class SocketTakenOver(ConnectionAbortedError):
    """Ends the request of a served WebSocket on a threaded server, without a log line.

    Werkzeug and wsgiref (Django's ``runserver``) take a ConnectionError from the
    application as "the client went away": they write nothing more and log no 500.

    Example:
        >>> isinstance(SocketTakenOver("done"), ConnectionError)
        True
    """


def _from_threaded_server(environ: dict[str, Any], server_socket: socket.socket) -> TakenSocket:
    if isinstance(server_socket, ssl.SSLSocket):  # `flask run --cert`: stdlib TLS would block the hub
        log.error("WebSocket upgrade on a TLS development server: serve TLS with `ignitia-sync` or a proxy")
        raise HandshakeError(500, "this server cannot upgrade to WebSocket")
    # What the server's reader holds first: that toggles the blocking mode of the socket,
    # which the duplicate below shares (one open file, two descriptors).
    buffered = _drain_buffer(environ.get(READER_KEY) or environ.get("wsgi.input"), server_socket)
    # A duplicate descriptor: the server's own socket object stays valid for its clean-up
    # (Werkzeug polls it after the application returns), and ours is ours to close.
    ours = gevent_socket(server_socket.dup())

    def finish() -> Iterable[bytes]:
        try:  # the peer sees the end now, and the server's next read sees EOF (no keep-alive reuse)
            server_socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise SocketTakenOver("the WebSocket has ended; this connection is not reused")

    # A stdlib socket means real threads; under monkey-patching they are greenlets of one hub.
    return TakenSocket(ours, buffered, finish, threaded=not isinstance(server_socket, gevent.socket.socket))


def _drain_buffer(stream: Any, sock: socket.socket) -> bytes:
    """The bytes a buffered reader already holds, without waiting for more."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        data: bytes = stream.peek(1) if hasattr(stream, "peek") else b""
    except (OSError, ValueError):
        data = b""
    finally:
        sock.settimeout(timeout)
    return stream.read(len(data)) if data else b""


def _refusal(start_response: StartResponse, exc: HandshakeError) -> Iterable[bytes]:
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    for name, value in exc.headers:
        check_header(name, value)
        if not is_hop_by_hop(name):  # PEP 3333: the server owns Connection, Upgrade, ...
            headers.append((name, value))
    start_response(f"{exc.status} {_reason(exc.status)}", headers)
    return [(exc.body + "\n").encode()]

