"""Where a WebSocket URL leads, and which redirects the client follows: pure, no sockets.

:func:`parse_url` splits ``ws://``, ``wss://`` and ``ws+unix://`` URLs into a
:class:`_Target` (what :mod:`ignitia_sync.client.sockets` connects to and what the
handshake asks for); :func:`header_list` normalises the caller's headers; :func:`_follow`
turns a redirect's ``Location`` into the next URL, or refuses it; :data:`_CREDENTIALS`
are the headers that stay behind when a redirect leads to another origin.

Example:
    >>> from ignitia_sync.exceptions import HandshakeError
    >>> from ignitia_sync.sansio.client_handshake import Redirect
    >>> target = parse_url("wss://example.com:8443/chat?room=1")
    >>> target.host, target.port, target.target, target.host_header
    ('example.com', 8443, '/chat?room=1', 'example.com:8443')
    >>> _follow("wss://example.com/old", Redirect(301, "/new", HandshakeError(301, "")))
    'wss://example.com/new'
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .._support.logs import safe_url
from ..exceptions import InvalidHandshake
from ..sansio.client_handshake import Redirect

__all__ = ["header_list", "parse_url"]

log = logging.getLogger("ignitia_sync.client")


class _Target(NamedTuple):
    """What a URL names: where to connect, and the request target and ``Host`` to send.

    Example:
        >>> parse_url("ws://[::1]:8080/a?b=1")  # doctest: +NORMALIZE_WHITESPACE
        _Target(secure=False, host='::1', port=8080, target='/a?b=1', unix_path=None,
                host_header='[::1]:8080')
    """

    #: ``wss://``: TLS over the connection.
    secure: bool
    #: The host name or address (no brackets around an IPv6 one); ``localhost`` for a Unix socket.
    host: str
    #: The TCP port (the scheme's default when the URL has none); 0 for a Unix socket.
    port: int
    #: The path and query of the request line.
    target: str
    #: The Unix socket's path for ``ws+unix://``, else None.
    unix_path: str | None
    #: The ``Host`` header's value (the port only when it is not the scheme's default).
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


def header_list(headers: Mapping[str, str] | Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """Headers as ``(name, value)`` pairs, from a mapping or a sequence of pairs.

    Example:
        >>> header_list({"Origin": "https://a.example"})
        [('Origin', 'https://a.example')]
    """
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())


#: Request headers not sent on to another origin after a redirect (as browsers and requests do).
_CREDENTIALS = frozenset(("authorization", "cookie", "host", "proxy-authorization"))


def _follow(url: str, redirect: Redirect) -> str:
    """The URL ``redirect`` leads to from ``url``: ``ws://`` or ``wss://`` only, never down to ``ws://``.

    A relative ``Location`` is resolved against ``url``; ``http(s)://`` becomes ``ws(s)://``.

    Raises:
        InvalidHandshake: (not retryable) a ``Location`` of another scheme (a local Unix
            socket included), or from ``wss://`` to an insecure URL.

    Example:
        >>> from ignitia_sync.exceptions import HandshakeError
        >>> _follow("ws://a.example/x", Redirect(302, "https://b.example/y", HandshakeError(302, "")))
        'wss://b.example/y'
    """
    location = urllib.parse.urljoin(url.replace("wss:", "https:", 1).replace("ws:", "http:", 1), redirect.location)
    scheme, rest = location.split(":", 1)
    new = {"https": "wss", "http": "ws"}.get(scheme.lower(), scheme.lower()) + ":" + rest
    if not new.startswith(("ws:", "wss:")):  # never to a local Unix socket, or anything else
        raise InvalidHandshake(f"refused a redirect to a {scheme[:16]!r} URL", retryable=False)
    if url.lower().startswith("wss:") and not new.startswith("wss:"):
        raise InvalidHandshake("refused a redirect from wss:// to an insecure URL", retryable=False)
    log.debug("following a %d redirect to %s", redirect.status, safe_url(new))
    return new
