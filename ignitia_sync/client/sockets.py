"""The client's socket to a :class:`~ignitia_sync.client.url._Target`: TCP, Unix, HTTP CONNECT proxy, TLS.

Every socket is gevent's (and every TLS socket gevent's ``SSLSocket``), so opening one runs
the calling thread's hub instead of blocking it; the caller bounds the whole with one
timeout (``connect(open_timeout=...)``). Nothing here speaks WebSocket: the handshake is
:func:`ignitia_sync.client.connect`'s.

Example:
    >>> import socket
    >>> from ignitia_sync.client.url import parse_url
    >>> listener = socket.create_server(("127.0.0.1", 0))
    >>> target = parse_url(f"ws://127.0.0.1:{listener.getsockname()[1]}/chat")
    >>> sock = _open_socket(target, proxy=None, context=None)
    >>> _peer(sock, target)[0]
    '127.0.0.1'
    >>> sock.close()
    >>> listener.close()
"""

from __future__ import annotations

import base64
import socket
import ssl as _ssl
import threading
import urllib.parse
import urllib.request
from typing import Any

import gevent.socket
import gevent.ssl
import h11

from .._support.logs import safe_url
from ..exceptions import HandshakeError, InvalidHandshake
from .url import _Target

__all__: list[str] = []  # nothing public: connect() is the way in

#: Bytes asked of the socket per read, while no WebSocket connection runs on it yet.
_READ_SIZE = 65536


def _open_socket(target: _Target, proxy: str | bool | None, context: _ssl.SSLContext | None) -> socket.socket:
    """A connected socket to ``target``: Unix, TCP (``TCP_NODELAY``) or a proxy's tunnel, TLS for ``wss://``.

    ``proxy`` is as :func:`~ignitia_sync.client.connect`'s (see :func:`_proxy_for`);
    ``context`` the TLS context (None: :func:`_default_context`). The socket is closed if
    any step fails.
    """
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
    """The process's one default TLS context (the system's CAs), made on first use.

    Example:
        >>> _default_context() is _default_context()
        True
    """
    global _default
    with _context_lock:
        if _default is None:
            _default = _ssl.create_default_context()
        return _default


def _proxy_for(target: _Target, proxy: str | bool | None) -> str | None:
    """The proxy URL to reach ``target`` through, or None for a direct connection.

    ``proxy`` a string: that proxy; True: the environment's (``ws_proxy``/``wss_proxy``,
    else ``http_proxy``/``https_proxy``), unless ``no_proxy`` names the host; None or
    False: none.

    Example:
        >>> from ignitia_sync.client.url import parse_url
        >>> _proxy_for(parse_url("wss://example.com/"), "http://proxy.internal:3128")
        'http://proxy.internal:3128'
        >>> _proxy_for(parse_url("wss://example.com/"), None) is None
        True
    """
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, str):
        return proxy
    if urllib.request.proxy_bypass(target.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get("wss" if target.secure else "ws") or proxies.get("https" if target.secure else "http")


def _tunnel(proxy_url: str, target: _Target) -> socket.socket:
    """A TCP connection to ``target`` through an HTTP proxy's CONNECT.

    The proxy URL's user info, if any, is sent as ``Proxy-Authorization: Basic``.

    Raises:
        ValueError: not an ``http://`` proxy URL.
        HandshakeError: the proxy answered CONNECT with a status other than 2xx.
        InvalidHandshake: the proxy's answer was broken, missing, or followed by bytes.
    """
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


def _peer(sock: socket.socket, target: _Target) -> tuple[Any, ...]:
    """The peer's address, or ``(unix path or host, port)`` when the socket cannot tell."""
    try:
        peer = sock.getpeername()
    except OSError:
        peer = None
    return tuple(peer) if isinstance(peer, tuple) else (target.unix_path or target.host, target.port)
