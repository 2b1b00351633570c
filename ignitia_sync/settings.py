"""Settings: what one connection needs (:class:`ConnectionSettings`), and what a listener adds.

Every host of a connection (the built-in server, a WSGI worker, a client, the test client)
takes a :class:`ConnectionSettings`; :class:`~ignitia_sync.hosting.server.ServerSettings` extends it
with the listener's own fields. Values are checked when the object is made, so a bad route
option fails at ``Router.websocket()``, not at the first upgrade.

Example:
    >>> ConnectionSettings(max_message_size=4096).max_queue
    16
    >>> ConnectionSettings(outbox_limit=0)
    Traceback (most recent call last):
    ...
    ValueError: outbox_limit must be at least 1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

__all__ = ["CONNECTION_OPTIONS", "ConnectionSettings"]


@dataclass(frozen=True)
class ConnectionSettings:
    """The limits and timers of one WebSocket connection; each has a safe default.

    Attributes:
        max_message_size: largest incoming message, after decompression (close 1009).
        max_queue: received data messages buffered before reading pauses (pings and pongs
            are not counted; the last few of them are kept).
        close_timeout: seconds the closing handshake, and sending what is queued before
            it, may take; then the TCP connection is dropped.
        compression: ``"deflate"`` to accept permessage-deflate, ``None`` to refuse it.
        deflate_server_window_bits: the largest window of our compressor (9-15).
        deflate_client_window_bits: the window asked of the client's compressor when it
            lets us choose (9-15); our inflater then needs only that much.
        deflate_mem_level: zlib's memLevel for our compressor (1-9).
        deflate_no_context_takeover: compress each outgoing message from scratch (answering
            ``server_no_context_takeover``): a broadcast then compresses once for every such
            peer instead of once per peer, and no compressor is kept between messages; small
            similar messages compress less well.
        subprotocols: subprotocols offered, in order of preference of the client.
        outbox_limit: bytes queued to the peer without blocking (broadcasts,
            ``send_nowait``) before it is closed with 1008 "slow consumer".
        send_timeout: seconds a blocking ``send()`` may wait for the peer to read what is
            queued before it; then the peer is closed with 1008 "slow consumer" (None: wait
            as long as the connection lives).
        ping_interval: seconds between keepalive pings (None: no pings).
        ping_timeout: seconds a ping may wait for its pong; then close 1011 and drop TCP.
        idle_timeout: close with 1001 after this many seconds without a data message
            from the peer (pings and pongs do not count).
        hello_timeout: a client of the rooms wire format (subprotocol ``ignitia.rooms.v1``)
            sends its hello first; without one within this many seconds it is closed (1008).
        coalesce_writes: in a monkey-patched process, while messages received from the
            peer still wait to be read, a small ``send()`` by the handler returns at once
            and its frame leaves with the replies that follow, in one system call, as soon
            as the hub runs (about a third less CPU per message under load); False: every
            ``send()`` returns only once the kernel has its frame (always so for a
            client, another greenlet, or a process that is not patched).

    Example:
        >>> ConnectionSettings(ping_interval=None).ping_timeout
        20.0
    """

    max_message_size: int = 1 << 20
    max_queue: int = 16
    close_timeout: float = 10.0
    compression: str | None = "deflate"
    deflate_server_window_bits: int = 12
    deflate_client_window_bits: int = 12
    deflate_mem_level: int = 5
    deflate_no_context_takeover: bool = False
    subprotocols: Sequence[str] = ()
    outbox_limit: int = 1 << 20
    send_timeout: float | None = 30.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    idle_timeout: float | None = None
    hello_timeout: float = 10.0
    coalesce_writes: bool = True

    def __post_init__(self) -> None:
        if self.compression not in ("deflate", None):
            raise ValueError("compression must be 'deflate' or None")
        for name in ("max_message_size", "max_queue", "outbox_limit"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.close_timeout > 0:
            raise ValueError("close_timeout must be positive")
        if not self.hello_timeout > 0:
            raise ValueError("hello_timeout must be positive")
        for name in ("send_timeout", "ping_interval", "ping_timeout", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None")
        if not 9 <= self.deflate_server_window_bits <= 15 or not 9 <= self.deflate_client_window_bits <= 15:
            raise ValueError("deflate window bits are 9 to 15")
        if not 1 <= self.deflate_mem_level <= 9:
            raise ValueError("deflate_mem_level is 1 to 9")
        if isinstance(self.subprotocols, str):
            raise TypeError("subprotocols must be a sequence of names, not a string")
        if not isinstance(self.coalesce_writes, bool):
            raise TypeError("coalesce_writes must be True or False")

    def connection_settings(self) -> ConnectionSettings:
        """Only the per-connection fields (a listener's settings drop their own).

        Example:
            >>> ConnectionSettings().connection_settings() == ConnectionSettings()
            True
        """
        if type(self) is ConnectionSettings:
            return self
        return ConnectionSettings(**{name: getattr(self, name) for name in CONNECTION_OPTIONS})


#: The field names of :class:`ConnectionSettings`: the options a route may override.
CONNECTION_OPTIONS = frozenset(f.name for f in fields(ConnectionSettings))
