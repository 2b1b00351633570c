"""WebSockets inside a WSGI application, on the same port: ``WebSocketMiddleware(app, router)``.

Upgrade requests for one of the router's routes become WebSocket connections (the same
checks, limits, middleware and registry as the standalone server: see
:mod:`ignitia_sync.hosting.host`); every other request goes to ``app`` untouched. The socket
is taken over from the WSGI server that runs the app (gunicorn ``-k gevent``, pywsgi,
Werkzeug's and Django's development servers: see :mod:`ignitia_sync.hosting.sockets`).

Example:
    >>> from ignitia_sync import Router
    >>> def hello(environ, start_response):
    ...     start_response("200 OK", [("Content-Type", "text/plain")])
    ...     return [b"hello"]
    >>> router = Router().websocket("/ws/echo", lambda ws: [ws.send(m) for m in ws])
    >>> app = WebSocketMiddleware(hello, router)
    >>> from ignitia_sync.testing import TestClient
    >>> with TestClient(app) as client:
    ...     ws = client.connect("/ws/echo")
    ...     ws.send_text("hi")
    ...     ws.recv(timeout=5)
    Text(data='hi')
"""

from __future__ import annotations

import atexit
import dataclasses
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple
from wsgiref.util import is_hop_by_hop

import gevent
from gevent._hub_local import get_hub_if_exists  # no public name; stable since gevent 1.3

from ._support.deadline import Deadline
from .connection.connection import WebSocketConnection
from .exceptions import HandshakeError
from .handlers import Handler
from .hosting.host import Host, HostSettings, RouteTargets, Target, shutdown_all
from .hosting.sockets import (
    HOSTS_KEY,
    READER_KEY,
    SOCKET_KEY,
    Finish,
    SocketTakenOver,
    TakenSocket,
    take_socket,
)
from .middleware import Middleware, RateLimit
from .router import Router
from .sansio.http import Request, _reason, check_header, client_ip
from .settings import ConnectionSettings

__all__ = [
    "READER_KEY", "SOCKET_KEY", "Finish", "Refused", "Served", "SocketTakenOver", "TakenSocket", "WebSocketHost",
    "WebSocketMiddleware", "shutdown_all", "take_socket", "upgrade_required",
]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class WebSocketHost(Host):
    """A :class:`~ignitia_sync.hosting.host.Host` inside a WSGI server: the socket is taken over.

    :class:`WebSocketMiddleware`, Flask's :class:`~ignitia_sync.flask.Sock` and Django's
    views are such hosts; each upgrade goes through :meth:`upgrade`. ``shutdown_all()``
    closes every host's connections (the gunicorn worker and ``ignitia-sync`` call it when
    they stop).

    Args:
        settings: per-connection settings (or a whole
            :class:`~ignitia_sync.hosting.host.HostSettings`); ``**overrides`` change single
            fields, the host's limits (``max_connections``...) included.
        trusted_proxies: with these proxy addresses, the client IP comes from their
            forwarding headers (see :func:`~ignitia_sync.sansio.http.client_ip`).
        backplane: carries broadcasts and ``send_to`` to the other processes (a
            :class:`~ignitia_sync.redis.RedisBackplane` or its URL); this process only by default.

    Example:
        >>> host = WebSocketHost(max_message_size=65536, max_connections_per_ip=20)
        >>> host.settings.max_message_size, len(host.registry)
        (65536, 0)
    """

    #: Stopped by whatever ends the process (the gunicorn worker, a server serving the app).
    ends_with_process = True

    def __init__(
        self,
        *,
        settings: ConnectionSettings | None = None,
        trusted_proxies: Iterable[str] = (),
        backplane: Any = None,
        **overrides: Any,
    ) -> None:
        base = settings if settings is not None else ConnectionSettings()
        if not isinstance(base, HostSettings):
            base = HostSettings(**{field.name: getattr(base, field.name) for field in dataclasses.fields(base)})
        if backplane is not None:
            overrides["backplane"] = backplane
        host_settings = dataclasses.replace(base, **overrides) if overrides else base
        super().__init__(host_settings, trusted_proxies=tuple(trusted_proxies) or None)
        #: The per-connection settings of this host's routes (a route's options apply on top).
        self.connection_settings = host_settings.connection_settings()

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
        pattern: str = "",
    ) -> Upgraded:
        """Upgrade the request of ``environ`` and serve it with ``handler`` until it closes.

        Returns what the WSGI application must return: the server-specific "already
        answered" value after a connection, or a refusal (status, headers, body) before it.
        """
        target = Target(
            handler, params, options or self.connection_settings, tuple(middleware), rate_limit, pattern
        )
        return self.upgrade_to(environ, target, connection_class)

    def upgrade_to(
        self, environ: dict[str, Any], target: Target, connection_class: type[WebSocketConnection] = WebSocketConnection
    ) -> Upgraded:
        """:meth:`upgrade` for a :class:`~ignitia_sync.hosting.host.Target` already made."""
        had_hub = get_hub_if_exists() is not None  # before anything here makes one for this thread
        request = Request.from_environ(environ)
        request = request.routed(target.params, client_ip(request, self.trusted_proxies))
        try:
            opening = self.open(request, target)
        except HandshakeError as exc:
            self.refused(request, exc)
            return Refused(exc)
        try:
            taken = take_socket(environ)
        except HandshakeError as exc:
            self.abandon(opening, exc)
            self.refused(request, exc)
            return Refused(exc)
        try:
            served_by = environ.get(HOSTS_KEY)
            if served_by is not None:  # our server's fallback: its stop() stops this host too
                served_by.add(self)
            if taken.threaded:
                if not self.registry.threaded:  # (a view's broadcast may have made it threaded already)
                    self.registry.serve_from_threads()
                _close_at_exit(self)
            else:
                if not self.registry._attached:
                    self.registry.attach()  # the worker's hub, on first use (the gunicorn worker attaches at boot)
                self.watch_blocking()
        except BaseException:  # not served: give back the place, end the upgrade's span
            self.abandon(opening)
            raise
        try:
            self.serve(opening, taken.sock, taken.buffered, connection_class, server_logs=taken.server_logs)
        finally:
            if taken.threaded and not had_hub:  # this request's thread ends: free its loop's descriptors
                gevent.get_hub().destroy(destroy_loop=True)
        return Served(taken.finish)


class Served(NamedTuple):
    """An upgrade that was served: the WSGI application returns ``finish(start_response)``.

    ``finish`` tells the WSGI server that the response is written and the connection must
    not be reused (:class:`~ignitia_sync.hosting.sockets.Finish`): it raises
    :class:`~ignitia_sync.hosting.sockets.SocketTakenOver` (under Werkzeug it returns ``[]``
    instead), so call it last, from the WSGI callable itself (or when the server iterates
    the response). Given ``start_response``, the server's own access line says 101.

    Example (the end of a WSGI callable)::

        outcome = host.upgrade_to(environ, target)
        return outcome.finish(start_response)
    """

    finish: Finish


class Refused(NamedTuple):
    """An upgrade refused before the 101: its status line, headers and body, for any framework.

    Example:
        >>> refused = Refused(HandshakeError(403, "origin not allowed"))
        >>> refused.status_line(), refused.body()
        ('403 Forbidden', b'origin not allowed\\n')
    """

    error: HandshakeError

    def status_line(self) -> str:
        """``"403 Forbidden"``: what ``start_response`` takes."""
        return f"{self.error.status} {_reason(self.error.status)}"

    def headers(self, environ: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
        """The refusal's headers, without hop-by-hop ones (PEP 3333: the server owns those).

        One exception, given the request's ``environ``: ``Upgrade: websocket``, which a 426
        must carry (RFC 9110), is kept on the servers that let an application send it
        (gunicorn, gevent's pywsgi and so ``ignitia-sync``, Werkzeug's); wsgiref-based ones
        (Django's ``runserver``) refuse any hop-by-hop header, so there the 426 goes without it.

        Example:
            >>> refused = upgrade_required()
            >>> refused.headers({"SERVER_SOFTWARE": "gevent/26 Python/3.12"})[1:]
            [('Upgrade', 'websocket')]
            >>> refused.headers({"SERVER_SOFTWARE": "WSGIServer/0.2"})[1:]
            []
        """
        keep_upgrade = environ is not None and _sends_upgrade_header(environ)
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        for name, value in self.error.headers:
            check_header(name, value)
            upgrade = keep_upgrade and name.lower() == "upgrade" and value == "websocket"
            if upgrade or not is_hop_by_hop(name):
                headers.append((name, value))
        return headers

    def body(self) -> bytes:
        """The one-line explanation, as bytes."""
        return (self.error.body + "\n").encode()

    def respond(self, start_response: StartResponse, environ: Mapping[str, Any] | None = None) -> Iterable[bytes]:
        """Write the refusal through ``start_response`` (``environ``: see :meth:`headers`); returns the body."""
        start_response(self.status_line(), self.headers(environ))
        return [self.body()]


Upgraded = Served | Refused


def upgrade_required() -> Refused:
    """The answer to a plain HTTP request (no ``Upgrade: websocket``) for a WebSocket route: 426.

    What the server answers for its own routes, and what Flask's ``Sock`` routes and Django's
    WebSocket views answer (see :meth:`Refused.headers` for the ``Upgrade`` header).

    Example:
        >>> upgrade_required().status_line()
        '426 Upgrade Required'
    """
    return Refused(HandshakeError(426, "this URL speaks WebSocket", (("Upgrade", "websocket"),)))


def _sends_upgrade_header(environ: Mapping[str, Any]) -> bool:
    """The servers known to pass an application's ``Upgrade: websocket`` on (those we take sockets from)."""
    return (
        "gunicorn.socket" in environ
        or "werkzeug.socket" in environ
        or "gevent" in str(environ.get("SERVER_SOFTWARE", "")).lower()
    )


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
        deadline = Deadline(_EXIT_GRACE)
        while any(len(each.registry) for each in _at_exit_hosts) and not deadline.expired:
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
        self._targets = RouteTargets(self.connection_settings, self.router)

    @classmethod
    def shutdown_all(cls, code: int = 1001, reason: str = "Server shutdown") -> None:
        """:func:`~ignitia_sync.hosting.host.shutdown_all`: every WSGI host of the process."""
        shutdown_all(code, reason)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI entry point."""
        if "websocket" not in environ.get("HTTP_UPGRADE", "").lower():
            return self.app(environ, start_response)
        found = self.router.match(Request.from_environ(environ).path)
        if found is None:
            return self.app(environ, start_response)
        outcome = self.upgrade_to(environ, self._targets.of(*found))
        if isinstance(outcome, Refused):
            return outcome.respond(start_response, environ)
        return outcome.finish(start_response)


