"""The sans-I/O client handshake: the upgrade request out, the server's answer checked strictly.

h11 (wsproto's own HTTP parser) reads the response head; every WebSocket rule is checked
here: the status, ``Upgrade``/``Connection``, the accept key, and that the subprotocol
and extension chosen are ones we offered, with parameters we understand. Nothing here
reads or writes a socket.

Example:
    >>> handshake = ClientHandshake("example.com", "/chat", ConnectionSettings(compression=None))
    >>> handshake.request.split(b"\\r\\n")[0]
    b'GET /chat HTTP/1.1'
    >>> from wsproto.utilities import generate_accept_token
    >>> accept = generate_accept_token(handshake.key.encode()).decode()
    >>> handshake.receive_data(
    ...     b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
    ...     b"Sec-WebSocket-Accept: " + accept.encode() + b"\\r\\n\\r\\nfirst frame")
    >>> outcome = handshake.outcome()
    >>> outcome.trailing_data, outcome.subprotocol
    (b'first frame', None)
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import h11
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import generate_accept_token

from ..exceptions import HandshakeError, InvalidHandshake
from ..settings import ConnectionSettings
from .deflate import deflate_from_response
from .http import Headers
from .protocol import WebSocketProtocol

__all__ = ["ClientHandshake", "Opened", "Redirect", "USER_AGENT"]

#: What our client says it is (``User-Agent``), unless the caller sends its own.
USER_AGENT = "ignitia_sync"
#: The largest refusal body kept for :class:`~ignitia_sync.exceptions.HandshakeError`.
MAX_BODY = 64 * 1024
#: The largest response head accepted (status line and headers).
MAX_HEAD = 64 * 1024
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_RESERVED = frozenset((
    "upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol",
    "sec-websocket-extensions",
))


class Opened(NamedTuple):
    """The server accepted the upgrade.

    Attributes:
        protocol: the protocol state in the client role (deflate negotiated or not).
        subprotocol: the subprotocol the server chose, or None.
        headers: the 101 response's headers.
        trailing_data: bytes that came after the head (the first frames).
    """

    protocol: WebSocketProtocol
    subprotocol: str | None
    headers: Headers
    trailing_data: bytes


class Redirect(NamedTuple):
    """The server answered with a redirect (301, 302, 303, 307, 308) to ``location``.

    ``refusal`` is the same answer as an error, for a caller that follows no redirects.
    """

    status: int
    location: str
    refusal: HandshakeError


class ClientHandshake:
    """One upgrade request and the check of its answer.

    Args:
        host: the ``Host`` header (with the port when it is not the scheme's default).
        target: the request target, path and query.
        settings: the connection's limits (``max_message_size``, ``compression`` and the
            deflate window/memLevel used by our compressor).
        subprotocols: offered in this order of preference.
        headers: extra request headers (``Origin``, ``Authorization``, cookies, ...); a
            ``Host`` given here replaces ours.

    Raises:
        ValueError: a header name or value that is not valid HTTP (no header injection),
            or one of the headers the handshake sets itself (``Sec-WebSocket-*``, ...).
    """

    def __init__(
        self,
        host: str,
        target: str,
        settings: ConnectionSettings,
        *,
        subprotocols: Sequence[str] = (),
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        if isinstance(subprotocols, str):
            raise TypeError("subprotocols must be a sequence of names, not a string")
        for name in subprotocols:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"a subprotocol name is an HTTP token (no spaces, commas, ...): {name!r}")
        self._settings = settings
        self._subprotocols = tuple(subprotocols)
        #: The ``Sec-WebSocket-Key`` sent: 16 bytes from the CSPRNG, base64-encoded.
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")
        names = {name.lower() for name, _ in headers}
        reserved = names & _RESERVED
        if reserved:
            raise ValueError(f"the client sets {', '.join(sorted(reserved))} itself (use subprotocols=, compression=)")
        fields = [] if "host" in names else [("Host", host)]
        fields += [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self.key),
            ("Sec-WebSocket-Version", "13"),
        ]
        if self._subprotocols:
            fields.append(("Sec-WebSocket-Protocol", ", ".join(self._subprotocols)))
        if settings.compression:
            fields.append(("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"))
        if "user-agent" not in names:
            fields.append(("User-Agent", USER_AGENT))
        fields += list(headers)
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        try:
            request = self._h11.send(h11.Request(method="GET", target=target, headers=fields))
            request += self._h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid request header or target: {exc}") from None
        #: The bytes of the upgrade request.
        self.request: bytes = request
        self._status = 0
        self._headers = Headers([])
        self._body = bytearray()
        self._done: Opened | Redirect | HandshakeError | None = None

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the server; ``b""`` means it closed the connection.

        Raises:
            InvalidHandshake: the answer is not valid HTTP or breaks RFC 6455.
        """
        if self._done is not None:
            return
        self._h11.receive_data(data)
        try:
            self._parse(closed=not data)
        except h11.RemoteProtocolError as exc:
            raise InvalidHandshake(f"invalid HTTP response: {exc}") from None

    def outcome(self) -> Opened | Redirect | HandshakeError | None:
        """What the answer says so far: None while more bytes are needed.

        A refusal comes back as a :class:`HandshakeError` (status, body, headers) for the
        caller to raise; a redirect as :class:`Redirect`.
        """
        return self._done

    def _parse(self, closed: bool) -> None:
        while self._done is None:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                if closed:
                    if not self._status:
                        raise InvalidHandshake("the server closed the connection before answering")
                    self._refused()  # a body delimited by the end of the connection
                return
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    self._done = self._opened(_headers(event.headers))
                    return
                continue  # 100 Continue and friends: the real answer follows
            if isinstance(event, h11.Response):
                self._status = event.status_code
                self._headers = _headers(event.headers)
                location = self._headers.get("location")
                if self._status in _REDIRECTS and location:
                    refusal = HandshakeError(self._status, "", tuple(self._headers.raw_items()))
                    self._done = Redirect(self._status, location, refusal)
                    return
            elif isinstance(event, h11.Data):
                self._body += event.data[: MAX_BODY - len(self._body)]
                if len(self._body) >= MAX_BODY:
                    self._refused()
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                self._refused()
            elif event is h11.PAUSED:
                return

    def _refused(self) -> None:
        body = bytes(self._body).decode("utf-8", "replace")
        self._done = HandshakeError(self._status, body, tuple(self._headers.raw_items()))

    def _opened(self, headers: Headers) -> Opened:
        if "websocket" not in headers.tokens("upgrade") or "upgrade" not in headers.tokens("connection"):
            raise InvalidHandshake("the 101 response lacks Upgrade: websocket or Connection: Upgrade")
        accepts = headers.get_all("sec-websocket-accept")
        if accepts != [generate_accept_token(self.key.encode("ascii")).decode("ascii")]:
            raise InvalidHandshake("wrong or missing Sec-WebSocket-Accept")
        subprotocol = self._chosen_subprotocol(headers)
        deflate = self._chosen_deflate(headers)
        protocol = WebSocketProtocol(
            client=True, max_message_size=self._settings.max_message_size, deflate=deflate
        )
        data, _closed = self._h11.trailing_data
        return Opened(protocol, subprotocol, headers, bytes(data))

    def _chosen_subprotocol(self, headers: Headers) -> str | None:
        chosen = headers.tokens("sec-websocket-protocol")
        if not chosen:
            return None
        value = headers["sec-websocket-protocol"].strip()
        if len(chosen) > 1 or value not in self._subprotocols:
            raise InvalidHandshake(f"the server chose a subprotocol we did not offer: {value[:64]!r}")
        return value

    def _chosen_deflate(self, headers: Headers) -> PerMessageDeflate | None:
        values = [part.strip() for value in headers.get_all("sec-websocket-extensions") for part in value.split(",")]
        values = [value for value in values if value]
        if not values:
            return None
        name, *raw_params = (part.strip() for part in values[0].split(";"))
        if len(values) > 1 or name.lower() != "permessage-deflate" or not self._settings.compression:
            raise InvalidHandshake("the server chose an extension we did not offer")
        settings = self._settings
        try:
            return deflate_from_response(
                raw_params, settings.max_message_size,
                client_window_bits=settings.deflate_client_window_bits, mem_level=settings.deflate_mem_level,
            )
        except ValueError as exc:
            raise InvalidHandshake(str(exc)) from None


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    return Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw])
