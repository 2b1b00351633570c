"""Test your WebSocket handlers in process: :class:`TestClient`, and a pytest fixture.

The test client serves your application (a :class:`~ignitia_sync.router.Router`, a Flask
app with :class:`~ignitia_sync.flask.Sock`, a Django project, any WSGI app wrapped by
:class:`~ignitia_sync.wsgi.WebSocketMiddleware`) with the real server code, over a
socketpair: no port, no thread, the real protocol bytes both ways, every limit and
middleware on. Each test connection is a :class:`~ignitia_sync.client.ClientConnection`.

Example:
    >>> from ignitia_sync import Router
    >>> router = Router()
    >>> router.websocket("/hello/:name", lambda ws, name: ws.send_text(f"hi {name}"))  # doctest: +ELLIPSIS
    <ignitia_sync.router.Router object at ...>
    >>> with TestClient(router) as client:
    ...     ws = client.connect("/hello/alice")
    ...     ws.recv(timeout=1)
    Text(data='hi alice')

The package registers this module as a pytest plugin: the ``websocket_client`` fixture
gives a test client for the application your ``websocket_app`` fixture returns; override
``websocket_http_client`` (your framework's test client, to log in with) and
``websocket_settings`` (server settings) to change what it sends and serves.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.cookies import SimpleCookie
from typing import Any

import gevent.socket

from .client import ClientConnection, connect, header_list
from .hosting.server import Server
from .router import Router

__all__ = ["TestClient", "websocket_client", "websocket_http_client", "websocket_settings"]

_ports = itertools.count(40000)
#: A test connection's default ``max_message_size``: any message the app sends (its limits are the
#: server's; a browser has none of its own), below what zlib's ``max_length`` takes.
UNLIMITED = 1 << 62


class TestClient:
    """Serves ``app`` in this process and opens test connections to it.

    Args:
        app: a :class:`Router`, or a WSGI application (Flask, Django, anything wrapped by
            our middleware); plain HTTP requests are not its business (use your
            framework's own test client for those, and pass it as ``http_client``).
        http_client: a Flask/Werkzeug or Django test client whose cookies every
            connection sends: log in over HTTP with it, then open the WebSocket as that user.
        **settings: :class:`~ignitia_sync.hosting.server.ServerSettings` fields for the server
            (limits, ``max_connections_per_ip``...).

    A refused upgrade raises :class:`~ignitia_sync.exceptions.HandshakeError` with the
    status, body and headers. A test connection accepts messages of any size (its client
    side has no ``max_message_size`` of its own unless ``connect()`` is given one), so
    whatever the app's limits allow and the app sends arrives, as from a real server; every
    limit of the server side applies. Leaving the ``with`` block closes every test
    connection from the client side (1000, with the closing handshake), then stops the server.

    ``client.server.stats()`` counts the connections of a :class:`Router`'s routes; those of a
    WSGI app are its own host's (``sock.stats()`` for Flask's ``Sock``).

    Example:
        >>> from flask import Flask
        >>> from ignitia_sync.flask import Sock
        >>> app = Flask(__name__)
        >>> sock = Sock(app)
        >>> @sock.route("/echo")
        ... def echo(ws):
        ...     ws.send(ws.receive())
        >>> with TestClient(app) as client:
        ...     ws = client.connect("/echo")
        ...     ws.send_text("ping")
        ...     ws.recv(timeout=1)
        Text(data='ping')
    """

    __test__ = False  # not a test class, whatever pytest's name rules say

    def __init__(self, app: Router | Callable[..., Any], *, http_client: Any = None, **settings: Any) -> None:
        router = app if isinstance(app, Router) else Router()
        wsgi_app = None if isinstance(app, Router) else app
        settings.setdefault("handle_signals", False)
        # The test's own client side runs in the same hub and may block it on purpose.
        settings.setdefault("blocking_warning", None)
        #: The server that serves the test connections (``client.server.registry``, ``stats()``).
        self.server = Server(router, ("testserver", 80), wsgi_app=wsgi_app, **settings)
        self.server._stops_wsgi_hosts = False  # the app (its Sock, its views) outlives this client
        self.http_client = http_client
        self._connections: list[ClientConnection] = []

    def __enter__(self) -> TestClient:
        self.server.start(listen=False)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every test connection (1000), then stop the server."""
        for ws in self._connections:
            ws.close_and_wait()
        self._connections.clear()
        self.server.stop()

    def connect(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        subprotocols: Sequence[str] | None = None,
        cookies: Mapping[str, str] | None = None,
        client_address: str = "127.0.0.1",
        **options: Any,
    ) -> ClientConnection:
        """Open a test connection to ``path`` (with its query string).

        Args:
            headers: extra request headers (``Origin``, ``Authorization``...).
            subprotocols: offered in this order.
            cookies: cookies to send, on top of those of ``http_client``.
            client_address: the peer address the server sees (per-IP limits).
            **options: any keyword argument of :func:`ignitia_sync.client.connect`
                (``compression``, ``ping_interval``...); ``max_message_size`` limits what
                this client accepts (no limit by default: test what a client of yours
                would refuse by passing its limit).

        Raises:
            HandshakeError: the application refused the upgrade (``exc.status``, ``exc.body``).
        """
        if self.server._stopped is None:
            raise RuntimeError("use the TestClient in a `with` block (or call __enter__)")
        if not path.startswith("/"):
            raise ValueError(f"a path starts with '/': {path!r}")
        fields = header_list(headers)
        cookie = _cookie_header(self.http_client, path, cookies)
        if cookie:
            fields.append(("Cookie", cookie))
        ours, theirs = gevent.socket.socketpair()
        self.server.serve_socket(theirs, (client_address, next(_ports)))
        options.setdefault("open_timeout", 10.0)
        options.setdefault("max_message_size", UNLIMITED)  # the server's limits are the ones under test
        options.setdefault("max_redirects", 0)  # a redirect is the app's answer: HandshakeError
        ws = connect(f"ws://localhost{path}", sock=ours, headers=fields, subprotocols=subprotocols, **options)
        self._connections.append(ws)
        return ws


def _cookie_header(http_client: Any, path: str, extra: Mapping[str, str] | None) -> str:
    """The ``Cookie`` header a Werkzeug (Flask) or Django test client would send to ``path``."""
    pairs: dict[str, str] = {}
    if http_client is not None:
        jar = getattr(http_client, "cookies", None)
        if isinstance(jar, SimpleCookie):  # Django's test client
            pairs.update((name, morsel.value) for name, morsel in jar.items())
        elif hasattr(http_client, "_cookies"):  # Werkzeug's (Flask's app.test_client())
            server_name = getattr(http_client, "server_name", None) or "localhost"
            for cookie in list(http_client._cookies.values()):
                if cookie._matches_request(server_name, path.split("?", 1)[0]):
                    pairs[cookie.key] = cookie.value
        else:
            raise TypeError(f"not a Flask/Werkzeug or Django test client: {type(http_client).__name__}")
    pairs.update(extra or {})
    return "; ".join(f"{name}={value}" for name, value in pairs.items())


try:
    import pytest
except ImportError:  # pragma: no cover - the plugin is only loaded by pytest
    pass
else:

    @pytest.fixture
    def websocket_http_client() -> Any:
        """The HTTP test client whose cookies ``websocket_client`` sends: None until you override it.

        Override it (in ``conftest.py`` or a test module) to return your framework's test
        client; log in with it in the test, and every later ``websocket_client.connect()``
        carries its session cookie. The test gets the same object as ``websocket_client``.

        Example (Flask; Django: ``return django.test.Client()``, or pytest-django's ``client``)::

            @pytest.fixture
            def websocket_http_client(websocket_app):
                return websocket_app.test_client()

            def test_private(websocket_client, websocket_http_client):
                websocket_http_client.post("/login", data={"name": "alice"})
                assert websocket_client.connect("/ws/hello").recv(timeout=1).data == "hello alice"
        """
        return None

    @pytest.fixture
    def websocket_settings() -> dict[str, Any]:
        """Keyword arguments of the :class:`TestClient` that ``websocket_client`` opens: none until overridden.

        Any :class:`~ignitia_sync.hosting.server.ServerSettings` field (limits, ``max_connections_per_ip``...).

        Example::

            @pytest.fixture
            def websocket_settings():
                return {"max_connections_per_ip": 2}
        """
        return {}

    @pytest.fixture
    def websocket_client(
        request: pytest.FixtureRequest, websocket_http_client: Any, websocket_settings: dict[str, Any],
    ) -> Iterator[TestClient]:
        """A :class:`TestClient` for the application of your ``websocket_app`` fixture.

        It sends the cookies of ``websocket_http_client`` (override that fixture to return your
        framework's test client, then log in with it in the test) and takes the server
        settings of ``websocket_settings``.

        Example (``conftest.py`` and a test; the plugin is loaded by pytest itself)::

            @pytest.fixture
            def websocket_app():
                from myproject.app import app
                return app

            def test_echo(websocket_client):
                ws = websocket_client.connect("/echo")
                ws.send_text("hi")
                assert ws.recv(timeout=1).data == "hi"
        """
        app = request.getfixturevalue("websocket_app")
        with TestClient(app, http_client=websocket_http_client, **websocket_settings) as client:
            yield client
