"""The blocking client: :func:`connect` to a WebSocket server, or :func:`reconnecting` forever.

A client connection is the server's connection with the protocol in its client role: the
same ordered outbound stream, limits, keepalive, close codes and teardown. It lives in the
gevent hub of the thread that opened it, so it works in a program that monkey-patches and
in one that does not (a plain script, a thread of a Django management command): a blocking
``recv()`` runs the hub until a message is there.

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

import base64
import dataclasses
import logging
import socket
import ssl as _ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import gevent
import gevent.event
import gevent.socket
import gevent.ssl
import h11

from .._support.backoff import Backoff
from .._support.logs import safe_url
from ..connection.connection import WebSocketConnection
from ..connection.threads import real_get_ident
from ..exceptions import ConnectionClosed, HandshakeError, InvalidHandshake
from ..message import Binary, Close, Message, Text
from ..sansio.client_handshake import ClientHandshake, Opened, Redirect
from ..sansio.http import Headers, Request, escape_for_log
from ..settings import ConnectionSettings

__all__ = [
    "Backoff", "ClientConnection", "Reconnecting", "connect", "header_list", "parse_url", "reconnecting", "retryable",
]

log = logging.getLogger("ignitia_sync.client")

#: Redirects followed before :class:`~ignitia_sync.exceptions.InvalidHandshake` is raised.
MAX_REDIRECTS = 10
_READ_SIZE = 65536


class ClientConnection(WebSocketConnection):
    """A connection we opened: the server connection's API, plus the server's answer.

    Made by :func:`connect` (and :class:`ignitia_sync.testing.TestClient`). As a context
    manager, it closes with 1000 on exit and waits (at most ``close_timeout``) for the
    closing handshake.

    Example:
        >>> def consume(url: str) -> None:
        ...     with connect(url) as ws:
        ...         for message in ws:
        ...             print(message)
    """

    __slots__ = ("response_headers",)

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
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.recv(left)
            except TimeoutError:
                return
            if message is None:
                raise AssertionError(f"the connection closed (code {self.close_code}) while expecting nothing")
            if isinstance(message, (Text, Binary, Close)):
                raise AssertionError(f"expected nothing, received {type(message).__name__}: {_describe(message)}")


def _describe(message: Message) -> str:
    data = getattr(message, "data", b"")
    return f"{data[:80]!r}{'...' if len(data) > 80 else ''}"


class _Target(NamedTuple):
    secure: bool
    host: str
    port: int
    target: str  # path and query
    unix_path: str | None
    host_header: str


def parse_url(url: str) -> _Target:
    """Split a ``ws://``, ``wss://`` or ``ws+unix://`` URL.

    ``ws+unix:///run/app.sock:/chat?x=1`` reaches ``/chat?x=1`` on the Unix socket
    ``/run/app.sock`` (Node ``ws``'s spelling).

    Raises:
        ValueError: another scheme, no host, or user info (send credentials as headers).

    Example:
        >>> parse_url("wss://example.com/chat?room=1")[:4]
        (True, 'example.com', 443, '/chat?room=1')
        >>> parse_url("ws+unix:///tmp/app.sock:/chat").unix_path
        '/tmp/app.sock'
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "ws+unix":
        path, _, target = parts.path.partition(":")
        if not path:
            raise ValueError(f"no socket path in {url!r}")
        target = (target or "/") + (f"?{parts.query}" if parts.query else "")
        return _Target(False, "localhost", 0, target, path, "localhost")
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL (ws://, wss:// or ws+unix://): {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    if parts.username or parts.password:
        raise ValueError("credentials in a WebSocket URL are not sent; pass an Authorization header")
    secure = scheme == "wss"
    port = parts.port or (443 if secure else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if parts.port in (None, 443 if secure else 80) else f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(secure, host, port, target, None, host_header)


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

    Example:
        >>> def greet(url: str) -> str:
        ...     with connect(url, subprotocols=["chat.v1"], open_timeout=5) as ws:
        ...         ws.send_json({"hello": "world"})
        ...         return ws.recv_json(timeout=5)
    """
    connection_settings = dataclasses.replace(
        settings or ConnectionSettings(), max_message_size=max_message_size, compression=compression,
        ping_interval=ping_interval, ping_timeout=ping_timeout, close_timeout=close_timeout,
    )
    extra = header_list(headers)
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    for _ in range(max_redirects + 1):
        target = parse_url(url)
        connected = sock
        sock = None  # a socket given is used for the first request only
        try:
            with gevent.Timeout(_left(deadline), TimeoutError(f"could not open {safe_url(url)} within {open_timeout}s")):
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


def header_list(headers: Mapping[str, str] | Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """Headers as ``(name, value)`` pairs, from a mapping or a sequence of pairs.

    Example:
        >>> header_list({"Origin": "https://a.example"})
        [('Origin', 'https://a.example')]
    """
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())


#: Request headers not sent on to another origin after a redirect (as browsers and requests do).
_CREDENTIALS = frozenset(("authorization", "cookie", "host", "proxy-authorization"))


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _follow(url: str, redirect: Redirect) -> str:
    location = urllib.parse.urljoin(url.replace("wss:", "https:", 1).replace("ws:", "http:", 1), redirect.location)
    scheme, rest = location.split(":", 1)
    new = {"https": "wss", "http": "ws"}.get(scheme.lower(), scheme.lower()) + ":" + rest
    if not new.startswith(("ws:", "wss:")):  # never to a local Unix socket, or anything else
        raise InvalidHandshake(f"refused a redirect to a {scheme[:16]!r} URL", retryable=False)
    if url.lower().startswith("wss:") and not new.startswith("wss:"):
        raise InvalidHandshake("refused a redirect from wss:// to an insecure URL", retryable=False)
    log.debug("following a %d redirect to %s", redirect.status, safe_url(new))
    return new


def _open_socket(target: _Target, proxy: str | bool | None, context: _ssl.SSLContext | None) -> socket.socket:
    if target.unix_path is not None:
        sock = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(target.unix_path)
        except BaseException:
            sock.close()
            raise
        return sock
    proxy_url = _proxy_for(target, proxy)
    if proxy_url is None:
        sock = gevent.socket.create_connection((target.host, target.port))
    else:
        sock = _tunnel(proxy_url, target)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _tls(sock, target, context) if target.secure else sock
    except BaseException:
        sock.close()
        raise


def _tls(sock: socket.socket, target: _Target, context: _ssl.SSLContext | None) -> socket.socket:
    """TLS over ``sock``, the certificate and host name checked by the default context."""
    # gevent's SSLSocket, never the stdlib one: a stdlib one would block the hub.
    return gevent.ssl.SSLSocket(sock=sock, server_hostname=target.host, _context=context or _default_context())


_context_lock = threading.Lock()
_default: _ssl.SSLContext | None = None


def _default_context() -> _ssl.SSLContext:
    global _default
    with _context_lock:
        if _default is None:
            _default = _ssl.create_default_context()
        return _default


def _proxy_for(target: _Target, proxy: str | bool | None) -> str | None:
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, str):
        return proxy
    if urllib.request.proxy_bypass(target.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get("wss" if target.secure else "ws") or proxies.get("https" if target.secure else "http")


def _tunnel(proxy_url: str, target: _Target) -> socket.socket:
    """A TCP connection to ``target`` through an HTTP proxy's CONNECT."""
    parts = urllib.parse.urlsplit(proxy_url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ValueError(f"only http:// proxies are supported, not {safe_url(proxy_url)!r}")
    sock = gevent.socket.create_connection((parts.hostname, parts.port or 8080))
    try:
        authority = f"[{target.host}]:{target.port}" if ":" in target.host else f"{target.host}:{target.port}"
        fields = [("Host", authority)]
        if parts.username:
            credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            fields.append(("Proxy-Authorization", "Basic " + base64.b64encode(credentials.encode()).decode()))
        conn = h11.Connection(h11.CLIENT)
        sock.sendall(conn.send(h11.Request(method="CONNECT", target=authority, headers=fields)))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(_READ_SIZE)
                if not data:
                    raise InvalidHandshake("the proxy closed the connection before answering CONNECT")
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                if not 200 <= event.status_code < 300:
                    raise HandshakeError(event.status_code, f"the proxy refused CONNECT to {authority}")
                leftover, _ = conn.trailing_data
                if leftover:
                    raise InvalidHandshake("the proxy sent bytes after its CONNECT answer")
                return sock
    except h11.RemoteProtocolError as exc:
        sock.close()
        raise InvalidHandshake(f"invalid answer from the proxy: {exc}") from None
    except BaseException:
        sock.close()
        raise


def _exchange(sock: socket.socket, handshake: ClientHandshake) -> Opened | Redirect | HandshakeError:
    sock.sendall(handshake.request)
    while (outcome := handshake.outcome()) is None:
        handshake.receive_data(sock.recv(_READ_SIZE))
    return outcome


def _open_connection(
    sock: socket.socket, target: _Target, opened: Opened, headers: list[tuple[str, str]], settings: ConnectionSettings
) -> ClientConnection:
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


def _peer(sock: socket.socket, target: _Target) -> tuple[Any, ...]:
    try:
        peer = sock.getpeername()
    except OSError:
        peer = None
    return tuple(peer) if isinstance(peer, tuple) else (target.unix_path or target.host, target.port)


# -- reconnecting --------------------------------------------------------------------------


_RETRY_STATUSES = frozenset((429, 500, 502, 503, 504))


def retryable(exc: BaseException) -> bool:
    """The default retry rule: network errors, timeouts, a broken answer, 429 and 5xx.

    Other refusals (403, 404, a 4xx in general) are the application's answer: retrying
    would not change it, so :func:`reconnecting` raises them; so are a bad certificate and
    a redirect we refuse to follow (``InvalidHandshake.retryable`` is False).

    Example:
        >>> retryable(HandshakeError(503, "busy")), retryable(HandshakeError(403, "no"))
        (True, False)
    """
    if isinstance(exc, HandshakeError):
        return exc.status in _RETRY_STATUSES
    if isinstance(exc, InvalidHandshake):
        return exc.retryable
    if isinstance(exc, _ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, (OSError, TimeoutError, ConnectionClosed))


class Reconnecting:
    """The iterator :func:`reconnecting` returns: a fresh connection each time the last one drops.

    :meth:`stop` (from any greenlet or thread) ends the iteration: a wait in progress ends
    at once and the current connection is closed with 1001.

    Attributes:
        attempts: connection attempts made so far.
        connections: connections opened so far.
        last_error: the last error an attempt failed with (None before any).
        last_delay: the last wait, in seconds.
    """

    def __init__(
        self,
        url: str,
        backoff: Backoff,
        retry_on: Callable[[BaseException], bool],
        options: dict[str, Any],
    ) -> None:
        self.url = url
        self._backoff = backoff
        self._retry_on = retry_on
        self._options = options
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # stop() against the loop handing out a new connection
        self._wake: gevent.event.Event | None = None
        self._loop: Any = None
        self._thread = 0
        self._current: ClientConnection | None = None
        self.attempts = 0
        self.connections = 0
        self.last_error: BaseException | None = None
        self.last_delay = 0.0

    def __iter__(self) -> Iterator[ClientConnection]:
        self._loop = gevent.get_hub().loop
        self._thread = real_get_ident()
        self._wake = gevent.event.Event()
        failures = 0  # attempts in a row that failed, or connections that did not last
        try:
            while not self._stopped.is_set():
                if failures:
                    self.last_delay = delay = self._backoff.delay(failures - 1)
                    log.info("reconnecting to %s in %.2fs (retry %d)", safe_url(self.url), delay, failures)
                    if self._wake.wait(delay):
                        break
                self.attempts += 1
                try:
                    ws = connect(self.url, **self._options)
                except Exception as exc:
                    self.last_error = exc
                    if not self._retry_on(exc):
                        raise
                    log.warning("could not connect to %s: %s", safe_url(self.url), _reason_of(exc))
                    failures += 1
                    continue
                with self._lock:
                    stopped = self._stopped.is_set()  # stop() came while connect() ran
                    if not stopped:
                        self._current = ws
                if stopped:
                    ws.close_and_wait(1001)
                    break
                self.connections += 1
                opened = time.monotonic()
                try:
                    yield ws
                finally:
                    self._current = None
                    ws.close_and_wait(1001 if self._stopped.is_set() else 1000)
                stable = time.monotonic() - opened >= self._backoff.reset_after
                failures = 1 if stable else failures + 1
        finally:
            self._wake = None

    def stop(self) -> None:
        """End the iteration from any greenlet or thread; idempotent.

        A connection being opened meanwhile is closed (1001) as soon as it is open.
        """
        with self._lock:
            self._stopped.set()
            wake, current, loop = self._wake, self._current, self._loop
        if loop is None:
            return
        if current is not None:
            current._transport.run_in_own_thread(current._transport.close, 1001, "")
        if wake is not None:
            if self._thread == real_get_ident():
                wake.set()
            else:
                loop.run_callback_threadsafe(wake.set)


def _reason_of(exc: BaseException) -> str:
    if isinstance(exc, HandshakeError):
        return f"HTTP {exc.status}"
    return escape_for_log(f"{type(exc).__name__}: {exc}")[:200]


def reconnecting(
    url: str,
    *,
    backoff: Backoff | None = None,
    retry_on: Callable[[BaseException], bool] = retryable,
    **options: Any,
) -> Reconnecting:
    """Connect to ``url`` again and again: ``for ws in reconnecting(url): ...``.

    Each connection that drops (or each attempt that fails with a retryable error) is
    followed by a wait from ``backoff`` and a new attempt; the loop body gets the new
    connection. A connection that stayed open ``backoff.reset_after`` seconds starts the
    waits from the shortest again. An error ``retry_on`` rejects (by default a 4xx other
    than 429, or a bad certificate) is raised from the loop.

    Args:
        url: as :func:`connect`.
        backoff: the waits (default :class:`Backoff`: 0-5 s, then x1.618 up to 60 s).
        retry_on: ``exc -> bool``: whether a failed attempt is retried (see :func:`retryable`).
        **options: every keyword argument of :func:`connect`.

    Example:
        >>> def consume(url: str) -> None:
        ...     for ws in reconnecting(url, headers={"Authorization": "Bearer t0k3n"}):
        ...         ws.send_json({"subscribe": "prices"})  # again after each reconnect
        ...         try:
        ...             for message in ws:
        ...                 print(message)
        ...         except ConnectionClosed:
        ...             continue  # a send that raced the drop: reconnect
    """
    return Reconnecting(url, backoff or Backoff(), retry_on, options)
