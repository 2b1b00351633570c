"""The blocking client: :func:`connect` to a WebSocket server, and the :class:`ClientConnection` it opens.

A client connection is the server's connection with the protocol in its client role: the
same ordered outbound stream, limits, keepalive, close codes and teardown. It lives in the
gevent hub of the thread that opened it, so it works in a program that monkey-patches and
in one that does not (a plain script, a thread of a Django management command): a blocking
``recv()`` runs the hub until a message is there.

:func:`connect` is the opening's one sequence: the URL (:mod:`ignitia_sync.client.url`),
the socket (:mod:`ignitia_sync.client.sockets`), the handshake exchange, redirects, all in
one ``open_timeout``. :mod:`ignitia_sync.client.reconnect` calls it again and again.

Example:
    >>> from ignitia_sync import Router, Server
    >>> router = Router()
    >>> router.websocket("/echo", lambda ws: [ws.send(m) for m in ws])  # doctest: +ELLIPSIS
    <ignitia_sync.router.Router object at ...>
    >>> with Server(router, ("127.0.0.1", 0)) as server:
    ...     with connect(f"ws://127.0.0.1:{server.address[1]}/echo") as ws:
    ...         ws.send_text("hello")
    ...         ws.recv()
    Text(data='hello')
"""

from __future__ import annotations

import dataclasses
import socket
import ssl as _ssl
import urllib.parse
from collections.abc import Mapping, Sequence

import gevent

from .._support.deadline import Deadline
from .._support.logs import safe_url
from ..connection.connection import WebSocketConnection
from ..exceptions import HandshakeError, InvalidHandshake
from ..message import Binary, Close, Message, Text
from ..sansio.client_handshake import ClientHandshake, Opened, Redirect
from ..sansio.http import Headers, Request
from ..settings import ConnectionSettings
from .sockets import _READ_SIZE, _open_socket, _peer, _tls
from .url import _CREDENTIALS, _follow, _Target, header_list, parse_url

# header_list: also imported from here by ignitia_sync.testing.
__all__ = ["MAX_REDIRECTS", "ClientConnection", "connect", "header_list"]

#: Redirects followed before :class:`~ignitia_sync.exceptions.InvalidHandshake` is raised.
MAX_REDIRECTS = 10


class ClientConnection(WebSocketConnection):
    """A connection we opened: the server connection's API, plus the server's answer.

    Made by :func:`connect` (and :class:`ignitia_sync.testing.TestClient`). As a context
    manager, it closes with 1000 on exit and waits (at most ``close_timeout``) for the
    closing handshake.

    Example::

        def consume(url: str) -> None:
            with connect(url) as ws:
                for message in ws:
                    print(message)
    """

    __slots__ = ("response_headers",)

    #: A client's send() is always written before it returns: a script may exit right after
    #: it, and a client seldom answers a queue of messages (no write coalescing).
    _coalesces = False

    response_headers: Headers

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_and_wait()

    def close_and_wait(self, code: int = 1000, reason: str = "") -> None:
        """Close (if still open), wait for the closing handshake, release the socket.

        Waits at most ``close_timeout`` (then the TCP connection is dropped). Messages not
        yet received are discarded.
        """
        self._transport.finish(code, reason)

    def expect_nothing(self, seconds: float = 0.1) -> None:
        """Assert that no data message arrives within ``seconds`` (pings and pongs are ignored).

        Raises:
            AssertionError: one did (its kind and size are in the message), or the
                connection closed meanwhile.
        """
        deadline = Deadline(seconds)
        while not deadline.expired:
            try:
                message = self.recv(deadline.left())
            except TimeoutError:
                return
            if message is None:
                raise AssertionError(f"the connection closed (code {self.close_code}) while expecting nothing")
            if isinstance(message, (Text, Binary, Close)):
                raise AssertionError(f"expected nothing, received {type(message).__name__}: {_describe(message)}")


def _describe(message: Message) -> str:
    data = getattr(message, "data", b"")
    return f"{data[:80]!r}{'...' if len(data) > 80 else ''}"


def connect(
    url: str,
    *,
    subprotocols: Sequence[str] | None = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    compression: str | None = "deflate",
    open_timeout: float | None = 10.0,
    ssl: _ssl.SSLContext | None = None,
    max_message_size: int = 1 << 20,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 10.0,
    proxy: str | bool | None = None,
    settings: ConnectionSettings | None = None,
    sock: socket.socket | None = None,
    max_redirects: int = MAX_REDIRECTS,
) -> ClientConnection:
    """Open a WebSocket to ``url`` and return it once the server has accepted.

    Args:
        url: ``ws://host[:port]/path``, ``wss://...`` or ``ws+unix:///socket/path:/path``.
        subprotocols: offered, in order of preference; :attr:`~ClientConnection.subprotocol`
            is the server's choice.
        headers: extra request headers (``Origin``, ``Authorization``, ``Cookie``...).
        compression: ``"deflate"`` offers permessage-deflate; None does not.
        open_timeout: seconds for DNS, TCP, proxy, TLS, the handshake and every redirect,
            together; then :class:`TimeoutError`.
        ssl: the TLS context for ``wss://`` (default: the system's CAs, certificate and
            host name checked).
        max_message_size, ping_interval, ping_timeout, close_timeout: as the server's
            (:class:`~ignitia_sync.settings.ConnectionSettings`).
        proxy: an ``http://[user:pass@]host:port`` proxy reached with CONNECT; True: the
            environment's (``https_proxy``/``http_proxy``, honouring ``no_proxy``); None: none.
        settings: every other limit (``max_queue``, ``outbox_limit``, ``send_timeout``,
            deflate windows); the keyword arguments above override it.
        sock: an already connected socket to speak over (the URL then only gives the
            ``Host`` and the path).
        max_redirects: 3xx answers followed (never from ``wss://`` to ``ws://``); with 0,
            a redirect raises :class:`~ignitia_sync.exceptions.HandshakeError` (its
            ``Location`` is in ``headers``).

    Raises:
        HandshakeError: the server refused the upgrade (``status``, ``body``, ``headers``).
        InvalidHandshake: its answer broke RFC 6455, or too many redirects.
        TimeoutError: ``open_timeout`` passed.
        OSError: DNS, TCP or TLS failed (``ssl.SSLCertVerificationError`` for a bad certificate).

    Example::

        def greet(url: str) -> str:
            with connect(url, subprotocols=["chat.v1"], open_timeout=5) as ws:
                ws.send_json({"hello": "world"})
                return ws.recv_json(timeout=5)
    """
    connection_settings = dataclasses.replace(
        settings or ConnectionSettings(), max_message_size=max_message_size, compression=compression,
        ping_interval=ping_interval, ping_timeout=ping_timeout, close_timeout=close_timeout,
    )
    extra = header_list(headers)
    deadline = Deadline(open_timeout)
    for _ in range(max_redirects + 1):
        target = parse_url(url)
        connected = sock
        sock = None  # a socket given is used for the first request only
        try:
            with gevent.Timeout(deadline.left(), TimeoutError(f"could not open {safe_url(url)} within {open_timeout}s")):
                if connected is None:
                    connected = _open_socket(target, proxy, ssl)
                elif target.secure and not isinstance(connected, _ssl.SSLSocket):
                    connected = _tls(connected, target, ssl)  # never a wss:// handshake in clear text
                handshake = ClientHandshake(
                    target.host_header, target.target, connection_settings,
                    subprotocols=subprotocols or (), headers=extra,
                )
                outcome = _exchange(connected, handshake)
        except BaseException:
            if connected is not None:
                connected.close()
            raise
        if isinstance(outcome, Opened):
            return _open_connection(connected, target, outcome, extra, connection_settings)
        connected.close()
        if isinstance(outcome, HandshakeError):
            raise outcome
        if not max_redirects:
            raise outcome.refusal
        new_url = _follow(url, outcome)
        if parse_url(new_url)[:3] != target[:3]:  # another origin: the caller's credentials stay here
            extra = [(name, value) for name, value in extra if name.lower() not in _CREDENTIALS]
        url = new_url
    raise InvalidHandshake(f"more than {max_redirects} redirects", retryable=False)


def _exchange(sock: socket.socket, handshake: ClientHandshake) -> Opened | Redirect | HandshakeError:
    """Send the upgrade request, read until the handshake has an outcome (the server's answer)."""
    sock.sendall(handshake.request)
    while (outcome := handshake.outcome()) is None:
        handshake.receive_data(sock.recv(_READ_SIZE))
    return outcome


def _open_connection(
    sock: socket.socket, target: _Target, opened: Opened, headers: list[tuple[str, str]], settings: ConnectionSettings
) -> ClientConnection:
    """The connection the server accepted, its transport started in the calling thread's hub."""
    path, _, query = target.target.partition("?")
    request = Request(
        "GET", urllib.parse.unquote(path), dict(urllib.parse.parse_qsl(query)), Headers(headers),
        remote_address=_peer(sock, target), target=target.target, client_ip="",
    )
    ws = ClientConnection(
        sock, request, opened.protocol, subprotocol=opened.subprotocol, settings=settings,
        initial_data=opened.trailing_data,
    )
    ws.response_headers = opened.headers
    ws._transport.start()
    return ws
