"""The one exception hierarchy of ignitia_sync, rooted at :class:`IgnitiaError`.

Example:
    >>> from ignitia_sync import ConnectionClosed, IgnitiaError
    >>> issubclass(ConnectionClosed, IgnitiaError)
    True
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "HandshakeError",
    "IgnitiaError",
    "InvalidHandshake",
    "MessageDecodeError",
    "MessageDropped",
    "ProtocolError",
]


class IgnitiaError(Exception):
    """Base class of every error this library raises.

    Example:
        >>> try:
        ...     raise ProtocolError(1002, "bad frame")
        ... except IgnitiaError as exc:
        ...     exc.code
        1002
    """


class ConnectionClosed(IgnitiaError, ConnectionError):
    """Raised when sending on, or pinging, a connection that is closed or closing.

    Attributes:
        code: the WebSocket close code (1006 when the TCP connection was lost).
        reason: the close reason, possibly empty.

    Example:
        >>> str(ConnectionClosed(1000, "bye"))
        'connection closed (code 1000, reason: bye)'
    """

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(f"connection closed (code {code}, reason: {reason or '-'})")
        self.code = code
        self.reason = reason


class ProtocolError(IgnitiaError):
    """The peer broke the WebSocket protocol or one of our limits.

    Attributes:
        code: the close code the connection is failed with (1002, 1007, 1009, ...).
        reason: a short, safe-to-send description.

    Example:
        >>> ProtocolError(1009, "message too big").code
        1009
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (close code {code})")
        self.code = code
        self.reason = reason


class HandshakeError(IgnitiaError):
    """The HTTP upgrade request was refused before any WebSocket traffic.

    A server raises it to refuse; our client raises it when a server refused (the
    status, the body it sent, its headers).

    Attributes:
        status: the HTTP status answered (400, 404, 405, 426, 431, ...).
        body: the short plain-text body sent with it.
        headers: extra response headers, such as ``Sec-WebSocket-Version: 13``.

    Example:
        >>> HandshakeError(404, "no WebSocket route for /nope").status
        404
    """

    def __init__(
        self, status: int, body: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers


class InvalidHandshake(IgnitiaError):
    """The server's answer to our upgrade request broke HTTP or RFC 6455.

    A wrong ``Sec-WebSocket-Accept``, a subprotocol or extension we did not offer, a 101
    without ``Upgrade: websocket``, a malformed head, too many redirects. (A server that
    *refuses* the upgrade with an HTTP status raises :class:`HandshakeError` instead.)

    Attributes:
        retryable: False for what retrying cannot change: a redirect we refuse to follow
            (to ``ws://`` from ``wss://``, to another scheme), or too many of them.

    Example:
        >>> isinstance(InvalidHandshake("wrong Sec-WebSocket-Accept"), IgnitiaError)
        True
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class MessageDecodeError(IgnitiaError, ValueError):
    """A message could not be decoded as the caller asked (for example, bad JSON).

    Example:
        >>> from ignitia_sync import Message
        >>> try:
        ...     Message.text("{oops").decode_json()
        ... except MessageDecodeError as exc:
        ...     print("bad JSON")
        bad JSON
    """


class MessageDropped(IgnitiaError):
    """A message waited for was dropped by the backplane and will never be delivered: raised at
    once, not after the timeout.

    ``Registry.publish(..., timeout=)``: the queue was full, the message waited too long for
    Redis, Redis refused it, or the backplane closed. ``send_to(..., timeout=)`` to another
    process: Redis refused it (otherwise a lost one ends in ``TimeoutError``).

    Attributes:
        reason: why it was dropped (a queue full, Redis refused it, it waited too long, ...).

    Example:
        >>> str(MessageDropped("the backplane is closed"))
        'message dropped: the backplane is closed'
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"message dropped: {reason}")
        self.reason = reason
