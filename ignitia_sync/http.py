"""The HTTP side of the upgrade: parsing the request head, checking it, and the answers.

No I/O happens here: bytes go in, :class:`Request` objects and response bytes come out.

Example:
    >>> reader = RequestHeadReader(max_size=16384)
    >>> request = reader.feed(
    ...     b"GET /chat?room=1 HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
    ...     b"Connection: Upgrade\\r\\nSec-WebSocket-Version: 13\\r\\n"
    ...     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n\\r\\n")
    >>> request.path, request.query["room"]
    ('/chat', '1')
    >>> websocket_key(request)
    'dGhlIHNhbXBsZSBub25jZQ=='
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import h11
from wsproto.utilities import generate_accept_token

from .exceptions import HandshakeError

__all__ = [
    "Headers",
    "Request",
    "RequestHeadReader",
    "Response",
    "accept_response",
    "client_ip",
    "error_response",
    "websocket_key",
]

_REASONS = {
    101: "Switching Protocols",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only HTTP headers; repeated headers are joined with ``, ``.

    Example:
        >>> h = Headers([("Sec-WebSocket-Protocol", "a"), ("sec-websocket-protocol", "b")])
        >>> h["SEC-WEBSOCKET-PROTOCOL"], h.get_all("sec-websocket-protocol")
        ('a, b', ['a', 'b'])
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name``, in order."""
        name = name.lower()
        return [value for key, value in self._items if key.lower() == name]

    def tokens(self, name: str) -> list[str]:
        """The comma-separated tokens of header ``name``, stripped and lower-cased."""
        return [
            token.strip().lower()
            for value in self.get_all(name)
            for token in value.split(",")
            if token.strip()
        ]

    def raw_items(self) -> list[tuple[str, str]]:
        """The headers as received: ``(name, value)`` pairs in order."""
        return list(self._items)

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for key, _ in self._items:
            seen.setdefault(key.lower(), None)
        return iter(seen)

    def __len__(self) -> int:
        return len({key.lower() for key, _ in self._items})

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """The upgrade request a connection was opened with (``ws.request``).

    Attributes:
        method: the HTTP method, normally ``"GET"``.
        path: the decoded path, without the query string.
        query: the query parameters (the first value of each name).
        headers: the request headers, case-insensitive.
        remote_address: the peer's ``(host, port)``.
        path_params: the values matched by the route pattern (``:name``, ``{name}``, ``*rest``).
        target: the raw request target as sent, path and query.

    Example:
        >>> def handler(ws, user_id):
        ...     assert ws.request.path_params["user_id"] == user_id
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Headers
    remote_address: tuple[Any, ...] = ("", 0)
    path_params: Mapping[str, str] = field(default_factory=dict)
    target: str = "/"
    client_ip: str = ""

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` from the ``Cookie`` headers, or None."""
        for header in self.headers.get_all("cookie"):
            for part in header.split(";"):
                key, sep, value = part.strip().partition("=")
                if sep and key == name:
                    return value
        return None

    def with_path_params(self, params: Mapping[str, str]) -> Request:
        """A copy of this request carrying the route's matched parameters."""
        return dataclasses.replace(self, path_params=dict(params))


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer that refuses an upgrade; middleware returns one to say no.

    Example:
        >>> Response(403, "origin not allowed").status
        403
    """

    status: int
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def to_bytes(self) -> bytes:
        """The complete response, ready to write."""
        return error_response(self.status, self.body or _REASONS.get(self.status, "refused"), self.headers)


class RequestHeadReader:
    """Feeds bytes into h11 until one complete request head is there.

    Args:
        max_size: the largest head accepted; a longer one is refused with 431.
        remote_address: recorded on the resulting :class:`Request`.

    Example:
        >>> reader = RequestHeadReader(max_size=64)
        >>> reader.feed(b"GET / HTTP/1.1\\r\\n") is None
        True
    """

    def __init__(self, max_size: int, remote_address: tuple[Any, ...] = ("", 0)) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)
        self._remote_address = remote_address
        self._max_size = max_size
        self._received = 0

    def feed(self, data: bytes) -> Request | None:
        """Add received bytes; returns the request once its head is complete.

        An empty ``data`` means the peer closed the connection.

        Raises:
            HandshakeError: 400 for a malformed head, 431 for an oversized one.
        """
        self._h11.receive_data(data)
        self._received += len(data)
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 431:
                raise HandshakeError(431, "request head too large") from None
            raise HandshakeError(status, f"malformed HTTP request: {exc}") from None
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.Request):
            if self._received - len(self.trailing_data) > self._max_size:
                raise HandshakeError(431, "request head too large")
            return _to_request(event, self._remote_address)
        raise HandshakeError(400, "connection closed before the request head was complete")

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the request head (the peer's first frames)."""
        return bytes(self._h11.trailing_data[0])


def client_ip(request: Request, trust_forwarded: bool) -> str:
    """The client's IP: the last ``X-Forwarded-For`` hop if the proxy is trusted, else the peer's."""
    if trust_forwarded:
        hops = [hop.strip() for value in request.headers.get_all("x-forwarded-for") for hop in value.split(",")]
        if hops and hops[-1]:
            return hops[-1]
    return str(request.remote_address[0]) if request.remote_address else ""


def _to_request(event: h11.Request, remote_address: tuple[Any, ...]) -> Request:
    target = event.target.decode("latin-1")
    raw_path, _, raw_query = target.partition("?")
    return Request(
        method=event.method.decode("latin-1"),
        path=unquote(raw_path),
        query=dict(reversed(parse_qsl(raw_query, keep_blank_values=True))),
        headers=Headers(
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers.raw_items()]
        ),
        remote_address=remote_address,
        target=target,
    )


def websocket_key(request: Request) -> str:
    """Check that ``request`` is a valid WebSocket upgrade and return its key.

    Raises:
        HandshakeError: 405 for a method other than GET, 426 for a plain request or an
            unsupported ``Sec-WebSocket-Version``, 400 for a missing or malformed key.
    """
    if request.method != "GET":
        raise HandshakeError(405, "WebSocket upgrades use GET", (("Allow", "GET"),))
    headers = request.headers
    if "websocket" not in headers.tokens("upgrade") or "upgrade" not in headers.tokens(
        "connection"
    ):
        raise HandshakeError(
            426,
            "this resource speaks WebSocket only; send an Upgrade: websocket request",
            (("Upgrade", "websocket"), ("Connection", "Upgrade")),
        )
    if headers.get_all("sec-websocket-version") != ["13"]:
        raise HandshakeError(
            426, "unsupported Sec-WebSocket-Version; this server speaks 13",
            (("Sec-WebSocket-Version", "13"),),
        )
    keys = headers.get_all("sec-websocket-key")
    if len(keys) != 1:
        raise HandshakeError(400, "missing or repeated Sec-WebSocket-Key")
    key = keys[0].strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HandshakeError(400, "malformed Sec-WebSocket-Key") from None
    return key


def accept_response(key: str, subprotocol: str | None, extensions: str | None) -> bytes:
    """The ``101 Switching Protocols`` answer for a checked upgrade request."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {generate_accept_token(key.encode('ascii')).decode('ascii')}",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_response(
    status: int, body: str, headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """A complete plain-text HTTP refusal that closes the connection.

    Example:
        >>> error_response(404, "not found").split(b"\\r\\n")[0]
        b'HTTP/1.1 404 Not Found'
    """
    payload = (body + "\n").encode("utf-8")
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
