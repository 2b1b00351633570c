"""The HTTP side of the upgrade: parsing the request head, checking it, and the answers.

No I/O happens here: bytes go in, :class:`Request` objects and response bytes come out.
The request head is parsed by hand, strictly (RFC 9112): h11 did it before and cost a fifth
of a handshake's CPU time; the tests check both agree on valid heads.

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
import functools
import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from wsproto.utilities import generate_accept_token

from .._support.logs import escape_for_log
from ..exceptions import HandshakeError

__all__ = [
    "Headers",
    "Request",
    "RequestHeadReader",
    "Response",
    "accept_response",
    "check_head",
    "check_header",
    "client_ip",
    "error_response",
    "escape_for_log",
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
    505: "HTTP Version Not Supported",
}

#: The most header lines a request head may have (websockets stops at 128 too).
MAX_HEADERS = 128
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])")
#: name ":" OWS value OWS, where the value is visible characters with inner spaces or tabs.
_FIELD_LINE = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?)[ \t]*"
)


#: Heads with more header lines than this get an index instead of a scan per lookup.
_SCAN_LIMIT = 24


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only HTTP headers; repeated headers are joined with ``, ``.

    Example:
        >>> h = Headers([("Sec-WebSocket-Protocol", "a"), ("sec-websocket-protocol", "b")])
        >>> h["SEC-WEBSOCKET-PROTOCOL"], h.get_all("sec-websocket-protocol")
        ('a, b', ['a', 'b'])
    """

    __slots__ = ("_by_name", "_items")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self._by_name: dict[str, list[str]] | None = None

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name``, in order.

        A short head is scanned; a long one (an attack, usually) is indexed once, so that
        the handshake's dozen lookups stay linear in the number of headers.
        """
        name = name.lower()
        items = self._items
        if len(items) <= _SCAN_LIMIT:
            return [value for key, value in items if key.lower() == name]
        by_name = self._by_name
        if by_name is None:
            by_name = self._by_name = {}
            for key, value in items:
                by_name.setdefault(key.lower(), []).append(value)
        return list(by_name.get(name, ()))

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
        return iter(list(dict.fromkeys(key.lower() for key, _ in self._items)))

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
        client_ip: the client's address (the peer's, or a trusted proxy's forwarded one).
        http_version: ``"1.1"`` (a WebSocket upgrade needs 1.1 or later).
        head_size: the size of the request head in bytes, as the host received it.

    Example:
        >>> request = Request("GET", "/chat/alice", {}, Headers([("Host", "example.com")]))
        >>> routed = request.routed({"user_id": "alice"}, "203.0.113.7")  # ws.request in the handler
        >>> routed.path_params, routed.client_ip
        ({'user_id': 'alice'}, '203.0.113.7')
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Headers
    remote_address: tuple[Any, ...] = ("", 0)
    path_params: Mapping[str, str] = field(default_factory=dict)
    target: str = "/"
    client_ip: str = ""
    http_version: str = "1.1"
    head_size: int = 0

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` from the ``Cookie`` headers, or None."""
        for header in self.headers.get_all("cookie"):
            for part in header.split(";"):
                key, sep, value = part.strip().partition("=")
                if sep and key == name:
                    return value
        return None

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> Request:
        """The request of a WSGI environ (PEP 3333), for hosts that embed a connection.

        Header names are rebuilt from ``HTTP_*`` keys (and ``CONTENT_TYPE`` and
        ``CONTENT_LENGTH``); the path is re-encoded from WSGI's latin-1 and decoded as
        UTF-8, as the built-in server does.

        Example:
            >>> request = Request.from_environ({
            ...     "REQUEST_METHOD": "GET", "PATH_INFO": "/chat/caf\xc3\xa9",
            ...     "QUERY_STRING": "room=1", "HTTP_UPGRADE": "websocket",
            ...     "REMOTE_ADDR": "10.0.0.5", "REMOTE_PORT": "5123"})
            >>> request.path, request.query["room"], request.headers["upgrade"]
            ('/chat/café', '1', 'websocket')
        """
        headers = [
            (key[5:].replace("_", "-").title(), str(value))
            for key, value in environ.items()
            if key.startswith("HTTP_")
        ]
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers.append((key.replace("_", "-").title(), str(environ[key])))
        raw_path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "/"))
        path = raw_path.encode("latin-1").decode("utf-8", "replace") or "/"
        query = str(environ.get("QUERY_STRING", ""))
        remote = (str(environ.get("REMOTE_ADDR", "")), int(environ.get("REMOTE_PORT") or 0))
        protocol = str(environ.get("SERVER_PROTOCOL", "HTTP/1.1"))
        # The head as the server parsed it: request line, then "Name: value\r\n" per header.
        head_size = len(raw_path) + len(query) + 16 + sum(len(name) + len(value) + 4 for name, value in headers)
        return cls(
            method=str(environ.get("REQUEST_METHOD", "GET")),
            path=path,
            query=dict(reversed(parse_qsl(query, keep_blank_values=True))) if query else {},
            headers=Headers(headers),
            remote_address=remote,
            target=quote(path) + ("?" + query if query else ""),
            client_ip=remote[0],
            http_version=protocol.removeprefix("HTTP/"),
            head_size=head_size,
        )

    def routed(self, params: Mapping[str, str], client_ip: str) -> Request:
        """A copy carrying the route's matched parameters and the client's IP (one copy, not two)."""
        return Request(  # not dataclasses.replace: this runs once per upgrade, and replace is slow
            self.method, self.path, self.query, self.headers, self.remote_address, dict(params), self.target,
            client_ip, self.http_version, self.head_size,
        )


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

    def __post_init__(self) -> None:
        if not isinstance(self.status, int) or not 400 <= self.status <= 599:
            raise ValueError(f"a refusal's status is 4xx or 5xx, not {self.status!r}")
        for name, value in self.headers:
            check_header(name, value)

    def to_bytes(self) -> bytes:
        """The complete response, ready to write."""
        return error_response(self.status, self.body or _REASONS.get(self.status, "refused"), self.headers)


_TOKEN_NAME = re.compile(_TOKEN.decode())
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def check_header(name: str, value: str) -> None:
    """Refuse a response header that could split the response or break the head.

    Raises:
        ValueError: the name is not an HTTP token, or the value holds CR, LF, NUL, another
            control character, or a character outside latin-1.

    Example:
        >>> check_header("X-Next", "a\\r\\nSet-Cookie: evil=1")
        Traceback (most recent call last):
        ...
        ValueError: header 'X-Next' has a value with a control or non-latin-1 character
    """
    if not isinstance(name, str) or not _TOKEN_NAME.fullmatch(name):
        raise ValueError(f"header name {name!r} is not an HTTP token")
    if not isinstance(value, str) or not _FIELD_VALUE.fullmatch(value):
        raise ValueError(f"header {name!r} has a value with a control or non-latin-1 character")


class RequestHeadReader:
    """Collects bytes until one complete request head is there, then parses it strictly.

    Args:
        max_size: the largest head accepted; a longer one is refused with 431.
        remote_address: recorded on the resulting :class:`Request`.

    Example:
        >>> reader = RequestHeadReader(max_size=64)
        >>> reader.feed(b"GET / HTTP/1.1\\r\\n") is None
        True
    """

    __slots__ = ("_buffer", "_max_size", "_remote_address", "trailing_data")

    def __init__(self, max_size: int, remote_address: tuple[Any, ...] = ("", 0)) -> None:
        self._buffer = b""
        self._max_size = max_size
        self._remote_address = remote_address
        #: Bytes received after the request head (the peer's first frames).
        self.trailing_data = b""

    def feed(self, data: bytes) -> Request | None:
        """Add received bytes; returns the request once its head is complete.

        An empty ``data`` means the peer closed the connection.

        Raises:
            HandshakeError: 400 for a malformed head, 431 for an oversized one, 505 for
                an HTTP major version other than 1.
        """
        if not data:
            raise HandshakeError(400, "connection closed before the request head was complete")
        # Empty lines before the request line are ignored (RFC 9112 section 2.2).
        buffer = (self._buffer + data if self._buffer else data).lstrip(b"\r\n")
        start = max(0, len(self._buffer) - 2)  # rescanning from the start would be quadratic
        # The head ends with an empty line: "\n\r\n" (CRLF endings) or "\n\n" (bare LF).
        crlf, lf = buffer.find(b"\n\r\n", start), buffer.find(b"\n\n", start)
        end = crlf if lf < 0 or 0 <= crlf < lf else lf
        size = end + (3 if end == crlf else 2)  # the whole head, its empty line included
        if end < 0 or size > self._max_size:
            if len(buffer) > self._max_size:
                raise HandshakeError(431, "request head too large")
            self._buffer = buffer
            return None
        self._buffer = b""
        self.trailing_data = buffer[size:]
        return self._parse(buffer[:end].split(b"\n"), size)

    def _parse(self, lines: list[bytes], size: int) -> Request:
        found = _REQUEST_LINE.fullmatch(lines[0].removesuffix(b"\r"))
        if found is None:
            raise HandshakeError(400, "malformed request line")
        method, target, major, minor = found.groups()
        if major != b"1":
            raise HandshakeError(505, "this server speaks HTTP/1.1")
        headers: list[tuple[str, str]] = []
        if len(lines) - 1 > MAX_HEADERS:
            raise HandshakeError(431, f"more than {MAX_HEADERS} header lines")
        for line in lines[1:]:
            field_line = _FIELD_LINE.fullmatch(line.removesuffix(b"\r"))
            if field_line is None:
                if line[:1] in (b" ", b"\t"):
                    raise HandshakeError(400, "obsolete line folding in the request head")
                raise HandshakeError(400, "malformed header line")
            name, value = field_line[1].decode("latin-1"), field_line[2].decode("latin-1")
            lowered = name.lower()
            if lowered == "transfer-encoding" or (lowered == "content-length" and value != "0"):
                raise HandshakeError(400, "a WebSocket upgrade request has no body")
            headers.append((name, value))
        return _to_request(
            method.decode("latin-1"), target.decode("latin-1"), headers, self._remote_address,
            f"1.{minor.decode()}", size,
        )


def client_ip(request: Request, trusted_proxies: Sequence[str] | None = None) -> str:
    """The client's IP, looking through the forwarding headers of proxies we trust.

    Only when the peer itself is one of ``trusted_proxies`` (addresses or networks such as
    ``"10.0.0.0/8"``) are RFC 7239 ``Forwarded`` (preferred) or ``X-Forwarded-For`` read,
    from the right: the first hop that is not a trusted proxy is the client. A hop that is
    not an IP address ends the walk there, and the last address seen is used. Without
    trusted proxies the peer's address is the client's.

    Example:
        >>> from ignitia_sync.sansio.http import Headers
        >>> request = Request("GET", "/", {}, Headers([("X-Forwarded-For", "203.0.113.7, 10.0.0.2")]),
        ...                   remote_address=("10.0.0.1", 5000))
        >>> client_ip(request, ["10.0.0.0/8"]), client_ip(request, None)
        ('203.0.113.7', '10.0.0.1')
    """
    peer = str(request.remote_address[0]) if request.remote_address else ""
    if not trusted_proxies:
        return peer
    networks = _networks(tuple(trusted_proxies))
    if not _is_in(peer, networks):
        return peer
    forwarded = request.headers.get_all("forwarded")
    if forwarded:
        hops = [_forwarded_for(element) for value in forwarded for element in value.split(",")]
    else:
        hops = [hop.strip() for value in request.headers.get_all("x-forwarded-for") for hop in value.split(",")]
    client = peer
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            break
        client = address
        if not _is_in(address, networks):
            break
    return client


@functools.lru_cache(maxsize=32)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _is_in(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _forwarded_for(element: str) -> str:
    """The ``for=`` of one RFC 7239 element (``for="[2001:db8::1]:4711";proto=https``)."""
    for pair in element.split(";"):
        key, _, value = pair.strip().partition("=")
        if key.lower() == "for":
            return value.strip().strip('"')
    return ""


def _ip(hop: str) -> str | None:
    """The IP address in a hop (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``), or None."""
    hop = hop.strip()
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return None


def _to_request(
    method: str, target: str, headers: list[tuple[str, str]], remote_address: tuple[Any, ...],
    http_version: str, head_size: int,
) -> Request:
    raw_path, _, raw_query = target.partition("?")
    return Request(
        method=method,
        path=unquote(raw_path),
        query=dict(reversed(parse_qsl(raw_query, keep_blank_values=True))) if raw_query else {},
        headers=Headers(headers),
        remote_address=remote_address,
        target=target,
        http_version=http_version,
        head_size=head_size,
    )


def check_head(request: Request, max_size: int) -> None:
    """The checks of the request head itself that every host applies (RFC 6455 4.1, 4.2.1).

    The built-in server's :class:`RequestHeadReader` parses bytes; a WSGI server parsed the
    head itself and may be laxer, so these run on the :class:`Request` whatever made it.

    Raises:
        HandshakeError: 400 for HTTP/1.0 or a missing or repeated Host header, 505 for
            another HTTP major version, 431 for a head over ``max_size`` bytes.

    Example:
        >>> check_head(Request("GET", "/", {}, Headers([]), http_version="1.1"), 16384)
        Traceback (most recent call last):
        ...
        ignitia_sync.exceptions.HandshakeError: 400: a request needs exactly one Host header
    """
    major, _, minor = request.http_version.partition(".")
    if major != "1":
        raise HandshakeError(505, "this server speaks HTTP/1.1")
    if minor == "0":
        raise HandshakeError(400, "a WebSocket upgrade needs HTTP/1.1 or later")
    if request.head_size > max_size:
        raise HandshakeError(431, "request head too large")
    if len(request.headers.get_all("host")) != 1:
        raise HandshakeError(400, "a request needs exactly one Host header")


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


def _reason(status: int) -> str:
    if status in _REASONS:
        return _REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Error" if status < 500 else "Server Error"


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
        f"HTTP/1.1 {status} {_reason(status)}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
