"""Flask integration: WebSocket routes in the Flask app itself, in its request context.

``sock = Sock(app)`` (or ``Sock()`` and later ``sock.init_app(app)``), then
``@sock.route("/ws/<room>")``: the route is a Flask route (URL rules, converters,
blueprints with ``bp=``, ``url_for``), and the handler runs *inside the request context of
its upgrade request*: ``flask.request``, ``session``, ``g``, ``current_app`` and
Flask-Login's ``current_user`` work. A flask-sock application runs after changing its
import line: ``ws.receive(timeout=None)``, ``ws.send(data)``, ``ws.close(reason, message)``
and ``ws.connected`` are there, beside everything of ours (``ws.registry``, rooms,
``recv``, ``send_json``).

Settings come from ``app.config["IGNITIA_SYNC"]`` (a dict of
:class:`~ignitia_sync.hosting.host.HostSettings` fields: connection settings and the host's
limits such as ``max_connections_per_ip``) and, for flask-sock
applications, ``app.config["SOCK_SERVER_OPTIONS"]`` (``ping_interval``,
``max_message_size``, ``subprotocols``); a route's own options win.
``app.config["IGNITIA_SYNC_BACKPLANE"]`` (a Redis URL or a backplane) spreads rooms and
broadcasts over every worker and host.

A plain HTTP request (no ``Upgrade: websocket``) for a WebSocket route gets 426 with
``Upgrade: websocket``, as under every host (Werkzeug alone would answer 400).

Serve the app with ``ignitia-sync myapp:app`` or ``gunicorn -k ignitia_sync.gunicorn.Worker``.

Example:
    >>> from flask import Flask, session
    >>> app = Flask(__name__)
    >>> sock = Sock(app)
    >>> @sock.route("/ws/echo")
    ... def echo(ws):
    ...     while (data := ws.receive()) is not None:
    ...         ws.send(data)
    >>> from ignitia_sync.testing import TestClient
    >>> with TestClient(app) as client:
    ...     ws = client.connect("/ws/echo")
    ...     ws.send_text("hi")
    ...     ws.recv(timeout=5)
    Text(data='hi')
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

from ._support.deadline import Deadline
from ._support.extras import needs
from .connection.connection import WebSocketConnection
from .exceptions import ConnectionClosed
from .handlers import Handler, as_handler
from .hosting.host import HostSettings, Target
from .message import Binary, Text
from .router import RouteOptions
from .wsgi import Finish, Refused, WebSocketHost, upgrade_required

with needs("ignitia_sync.flask", "Flask", extra="flask", packages=("flask", "werkzeug")):
    import flask
    from werkzeug.routing import WebsocketMismatch
    from werkzeug.wrappers import Response

__all__ = ["ConnectionClosed", "FlaskWebSocket", "Sock"]

#: A Flask URL variable, ``<name>`` or ``<converter:name>`` (the name is what the view takes).
_URL_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([A-Za-z_]\w*)>")
_FLASK_SOCK_OPTIONS = {"ping_interval": "ping_interval", "max_message_size": "max_message_size",
                       "subprotocols": "subprotocols"}


class FlaskWebSocket(WebSocketConnection):
    """Our connection, plus flask-sock's names: ``receive``, ``connected``, ``close(reason, message)``.

    Example:
        >>> def handler(ws: FlaskWebSocket) -> None:
        ...     data = ws.receive(timeout=5)  # str, bytes, or None after 5 s
        ...     if data is not None:
        ...         ws.send(data)
        >>> from flask import Flask
        >>> from ignitia_sync.testing import TestClient
        >>> app = Flask(__name__)
        >>> _ = Sock(app).route("/once")(handler)
        >>> with TestClient(app) as client:
        ...     ws = client.connect("/once")
        ...     ws.send_bytes(b"ok")
        ...     ws.recv(timeout=5)
        Binary(data=b'ok')
    """

    __slots__ = ()

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """The next data message's payload (``str`` or ``bytes``); None on timeout.

        Raises:
            ConnectionClosed: the connection is closed (flask-sock's behaviour).
        """
        deadline = Deadline(timeout)
        while True:
            try:
                message = self.recv(deadline.left())
            except TimeoutError:
                return None
            if message is None:
                raise ConnectionClosed(self.close_code or 1006, self.close_reason)
            if type(message) is Text or type(message) is Binary:
                return message.data

    @property
    def connected(self) -> bool:
        """True while the connection is open (flask-sock's name for ``not ws.closed``)."""
        return not self.closed

    def close(self, reason: int | None = None, message: str | None = None) -> None:  # type: ignore[override]
        """Close with code ``reason`` (1000) and text ``message``, as flask-sock spells it."""
        super().close(1000 if reason is None else reason, message or "")


class Sock:
    """WebSocket routes for a Flask app: ``sock = Sock(app)``; ``@sock.route(path)``.

    Args:
        app: the Flask app, or None and :meth:`init_app` later (application factories).

    The handler gets the connection (a :class:`FlaskWebSocket`) and the route's URL
    variables as keyword arguments. Each worker process has one registry per ``Sock``
    (:attr:`registry`); its backplane starts with the gunicorn worker, or else on first use
    in the process (an HTTP view's ``sock.registry.broadcast(...)`` included).
    """

    def __init__(self, app: flask.Flask | None = None) -> None:
        self._host: WebSocketHost | None = None
        self._app: flask.Flask | None = None
        self._pending: list[tuple[str, Callable[..., Any], Any, dict[str, Any]]] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Take the settings from ``app.config``, register the routes declared so far and the 426."""
        options = dict(app.config.get("IGNITIA_SYNC", {}))
        for flask_sock_name, ours in _FLASK_SOCK_OPTIONS.items():
            value = app.config.get("SOCK_SERVER_OPTIONS", {}).get(flask_sock_name)
            if value is not None:
                options.setdefault(ours, value)
        self._host = WebSocketHost(
            settings=HostSettings(**options), backplane=app.config.get("IGNITIA_SYNC_BACKPLANE")
        )
        self._app = app
        app.extensions["ignitia_sync"] = self
        app.register_error_handler(WebsocketMismatch, _upgrade_required)
        pending, self._pending = self._pending, []
        for path, func, bp, route_options in pending:
            self._register(app, path, func, bp, route_options)

    @property
    def host(self) -> WebSocketHost:
        """The settings, registry and shutdown of this extension (after :meth:`init_app`)."""
        if self._host is None:
            raise RuntimeError("Sock.init_app(app) has not been called")
        return self._host

    @property
    def registry(self) -> Any:
        """Every open WebSocket of these routes in this process (rooms, broadcast)."""
        return self.host.registry

    def stats(self) -> dict[str, Any]:
        """This process's counters for these routes (the figures of ``Server.stats()``).

        Example::

            @app.route("/metrics")
            def metrics():
                return sock.stats()  # open_connections, messages_in, close_codes, refused...
        """
        return self.host.stats()

    def route(self, path: str, bp: flask.Blueprint | None = None, **options: Any) -> Callable[[Any], Any]:
        """Register a WebSocket route: Flask's URL rule syntax, ``bp=`` for a blueprint.

        ``options`` are per-route connection settings (``max_message_size``, ...),
        ``middleware`` (upgrade middleware such as ``OriginCheck``) and ``rate_limit`` (a
        :class:`~ignitia_sync.middleware.RateLimit`) as on a router's route,
        ``decorators`` (view decorators applied before the upgrade, such as Flask-Login's
        ``login_required``: a refusal is then an HTTP answer, never a half-open socket),
        and Flask's own route options (``endpoint``, ``defaults``, ...).

        Example::

            @sock.route("/ws/private", decorators=[login_required])
            def private(ws):
                ws.send(f"hello {current_user.id}")
        """

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            if bp is None and self._app is None:
                self._pending.append((path, func, bp, options))  # registered by init_app
            else:
                self._register(self._app, path, func, bp, options)
            return func

        return decorator

    def _register(
        self, app: flask.Flask | None, path: str, func: Callable[..., Any], bp: flask.Blueprint | None,
        options: dict[str, Any],
    ) -> None:
        options = dict(options)
        decorators = options.pop("decorators", ())
        ours, theirs = RouteOptions.parse(options, others=True)  # theirs: Flask's own (endpoint...)
        handler = as_handler(func)
        handler.check(path, _URL_VARIABLE.findall(path))  # now, not at the first upgrade
        view = self._view(handler, func, ours, path)
        for decorator in reversed(list(decorators)):
            view = decorator(view)
        target: Any = bp if bp is not None else app
        target.route(path, websocket=True, **theirs)(view)

    def _view(self, handler: Handler, func: Callable[..., Any], ours: RouteOptions, pattern: str) -> Callable[..., Any]:
        sock = self

        @functools.wraps(func)
        def websocket_view(**params: Any) -> Response:
            host = sock.host
            # The URL variables as Flask's converters made them (an <int:n> is an int).
            target = Target(
                handler, params, ours.settings(host.connection_settings), ours.middleware, ours.rate_limit, pattern
            )
            outcome = host.upgrade_to(flask.request.environ, target, FlaskWebSocket)
            if isinstance(outcome, Refused):
                headers = outcome.headers(flask.request.environ)
                return Response(outcome.body(), status=outcome.status_line(), headers=headers)
            return _AlreadyAnswered(outcome.finish)

        return websocket_view


def _upgrade_required(error: WebsocketMismatch) -> Response:
    """Werkzeug's 400 for a request that does not fit a rule's ``websocket`` flag.

    A plain request for a WebSocket route gets our 426 instead (the same answer as under
    every host); an upgrade request for an HTTP-only route keeps Werkzeug's 400.
    """
    environ = flask.request.environ
    if "websocket" in environ.get("HTTP_UPGRADE", "").lower():
        return error.get_response()
    refused = upgrade_required()
    return Response(refused.body(), status=refused.status_line(), headers=refused.headers(environ))


class _AlreadyAnswered(flask.Response):
    """The response of a served upgrade: gives the server what tells it "already answered".

    A ``flask.Response``, so that Flask returns it as it is (another class would be
    converted by calling it, and the server would then write a response after the 101).
    """

    def __init__(self, finish: Finish) -> None:
        super().__init__()
        self._finish = finish

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        # Outside Flask's error handling: SocketTakenOver reaches the server; under Werkzeug
        # it returns [] after a 101 for its access line (`flask run --debug` sees no exception).
        return self._finish(start_response)
