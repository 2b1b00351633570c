"""The sans-I/O server handshake: an upgrade request and settings in, the 101 and a protocol out.

Every host (the built-in server, a WSGI worker, the test client) calls :func:`accept` once
it has a :class:`~ignitia_sync.sansio.http.Request`; it writes :attr:`Accepted.response` itself and
builds the connection from :attr:`Accepted.protocol`. Nothing here reads or writes a socket.

Example:
    >>> from ignitia_sync.sansio.http import RequestHeadReader
    >>> request = RequestHeadReader(16384).feed(
    ...     b"GET /chat HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
    ...     b"Sec-WebSocket-Version: 13\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
    ...     b"Sec-WebSocket-Protocol: chat\\r\\n\\r\\n")
    >>> accepted = accept(request, ConnectionSettings(subprotocols=["chat"]))
    >>> accepted.subprotocol, accepted.response.split(b"\\r\\n")[0]
    ('chat', b'HTTP/1.1 101 Switching Protocols')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..settings import ConnectionSettings
from .deflate import negotiate_deflate
from .http import Request, accept_response, check_head, websocket_key
from .protocol import WebSocketProtocol

__all__ = ["Accepted", "accept", "choose_subprotocol"]


class Accepted(NamedTuple):
    """A negotiated upgrade: the bytes to answer with and the connection's protocol state.

    Attributes:
        response: the complete ``101 Switching Protocols`` answer.
        protocol: the protocol object for the connection (deflate negotiated or not).
        subprotocol: the chosen subprotocol, or None.
        extensions: the ``Sec-WebSocket-Extensions`` value answered, or None.
    """

    response: bytes
    protocol: WebSocketProtocol
    subprotocol: str | None
    extensions: str | None


def accept(request: Request, settings: ConnectionSettings, *, max_head: int = 16384) -> Accepted:
    """Check an upgrade request and negotiate subprotocol and compression.

    Every host calls it with the request it has, whatever parsed it, so every host applies
    the same checks: the head (:func:`~ignitia_sync.sansio.http.check_head`), then the upgrade.

    Raises:
        HandshakeError: the request is not a valid WebSocket upgrade (400, 405, 426, 431, 505).
    """
    check_head(request, max_head)
    key = websocket_key(request)
    subprotocol = choose_subprotocol(request, settings.subprotocols)
    deflate, extensions = (
        negotiate_deflate(
            request.headers.get_all("sec-websocket-extensions"),
            settings.max_message_size,
            server_window_bits=settings.deflate_server_window_bits,
            client_window_bits=settings.deflate_client_window_bits,
            mem_level=settings.deflate_mem_level,
            no_context_takeover=settings.deflate_no_context_takeover,
        )
        if settings.compression
        else (None, None)
    )
    return Accepted(
        accept_response(key, subprotocol, extensions),
        WebSocketProtocol(max_message_size=settings.max_message_size, deflate=deflate),
        subprotocol,
        extensions,
    )


def choose_subprotocol(request: Request, supported: Sequence[str]) -> str | None:
    """The first subprotocol the client offers that we support, or None.

    Example:
        >>> from ignitia_sync.sansio.http import Headers
        >>> request = Request("GET", "/", {}, Headers([("Sec-WebSocket-Protocol", "v2, v1")]))
        >>> choose_subprotocol(request, ["v1", "v2"])
        'v2'
    """
    if not supported:
        return None
    for value in request.headers.get_all("sec-websocket-protocol"):
        for offered in value.split(","):
            if offered.strip() in supported:
                return offered.strip()
    return None
