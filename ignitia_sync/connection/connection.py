"""The user's side of one WebSocket: receive, send, close; safe from any greenlet of its hub.

A :class:`WebSocketConnection` frames messages and hands the bytes to its transport (one
ordered outbound stream, see :mod:`ignitia_sync.connection.transport`), and takes received messages
from its inbox (see :mod:`ignitia_sync.connection.inbox`). It knows nothing of the host that made it:
the host passes a registry, a shutdown event and a message filter.

Example:
    >>> def echo(ws: WebSocketConnection) -> None:
    ...     for message in ws:
    ...         if isinstance(message, Message.Text):
    ...             ws.send_text(f"Echo: {message.data}")
    >>> from ignitia_sync import Router
    >>> from ignitia_sync.testing import TestClient
    >>> with TestClient(Router().websocket("/echo", echo)) as client:
    ...     ws = client.connect("/echo")
    ...     ws.send_text("hi")
    ...     ws.recv(timeout=5)
    Text(data='Echo: hi')
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import gevent.event
import gevent.monkey

from ..exceptions import ConnectionClosed, MessageDecodeError
from ..message import Binary, Close, Message, Ping, Pong, Text, not_a_message
from ..sansio.http import Request
from ..sansio.protocol import ProtocolState, WebSocketProtocol
from ..settings import ConnectionSettings
from .inbox import EOF, FAILED, SHUTDOWN, TIMEOUT, Inbox
from .keepalive import Keepalive
from .threads import real_get_ident
from .transport import Transport

if TYPE_CHECKING:
    from ..broadcast.positions import Position, Recovery

__all__ = ["Framing", "RegistryAPI", "WebSocketConnection"]

_ids = itertools.count(1)
_DEFAULT_SETTINGS = ConnectionSettings()
#: Close codes an application may send (RFC 6455 section 7.4, plus 3000-4999).
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class Framing(Protocol):
    """What a connection frames its messages with: its :class:`WebSocketProtocol`, or a wrapper
    that puts each data message in an envelope first (the rooms wire format,
    ``broadcast/rooms_wire.py``)."""

    @property
    def state(self) -> ProtocolState: ...
    @property
    def close_code(self) -> int | None: ...
    @property
    def close_reason(self) -> str: ...
    def send(self, message: Message) -> bytes: ...
    def send_text(self, text: str) -> bytes: ...
    def send_bytes(self, data: bytes) -> bytes: ...


class RegistryAPI(Protocol):
    """What a connection's ``ws.registry`` offers (see :class:`~ignitia_sync.broadcast.registry.Registry`)."""

    def join(self, room: str, ws: WebSocketConnection, since: Position | None = None) -> Recovery:
        """Put ``ws`` in ``room``, after what it missed since ``since``."""

    def leave(self, room: str, ws: WebSocketConnection) -> None:
        """Take ``ws`` out of ``room``."""

    def rooms_of(self, ws: WebSocketConnection) -> frozenset[str]:
        """The rooms ``ws`` is in."""

    def broadcast(self, message: Message, room: str | None = None, exclude: Any = None) -> int:
        """Queue ``message`` to every connection or room member."""

    def identify(self, ws: WebSocketConnection, id: str, *, take_over: bool = False) -> None:
        """Give ``ws`` an application id."""

    def get(self, id: str) -> WebSocketConnection | None:
        """The connection with this id."""

    def set_user(self, ws: WebSocketConnection, user_id: str | None) -> None:
        """Make ``ws`` a connection of ``user_id`` (None: of no user)."""

    def connections_of(self, user_id: str) -> frozenset[WebSocketConnection]:
        """The open connections of ``user_id`` in this process."""


class WebSocketConnection:
    """One open WebSocket: receive with :meth:`recv`, send with :meth:`send` and friends.

    Made by a host (the built-in server, a WSGI integration, the test client) from the
    socket, the upgrade request and the negotiated protocol, after the 101 was sent.

    Args:
        sock: the connected socket (a stdlib socket is wrapped for gevent).
        request: the upgrade request, with path parameters.
        protocol: the protocol state for this connection.
        subprotocol: the negotiated subprotocol, if any.
        settings: limits and timers (:class:`~ignitia_sync.settings.ConnectionSettings`).
        initial_data: bytes that arrived right after the request head.
        shutdown_event: set by the host when it begins to stop (see :attr:`shutting_down`).

    Example:
        >>> def handler(ws: WebSocketConnection) -> None:
        ...     ws.send_text("Connected successfully!")
        ...     while (message := ws.recv()) is not None:
        ...         match message:
        ...             case Message.Text(text):
        ...                 ws.send_text(f"Echo: {text}")
        ...             case Message.Close(_):
        ...                 break
        >>> from ignitia_sync import Router
        >>> from ignitia_sync.testing import TestClient
        >>> with TestClient(Router().websocket("/", handler)) as client:
        ...     ws = client.connect("/")
        ...     print(ws.recv(timeout=5).data)
        ...     ws.send_text("hi")
        ...     print(ws.recv(timeout=5).data)
        Connected successfully!
        Echo: hi
    """

    #: Whether ``coalesce_writes`` applies to this kind of connection (a client: never).
    _coalesces: ClassVar[bool] = True

    __slots__ = (
        "__weakref__",
        "_eof",
        "_filter",
        "_inbox",
        "_proto",
        "_resume",
        "_shutdown",
        "_transport",
        "_user_id",
        "extensions",
        "host",
        "id",
        "opened_at",
        "registry",
        "request",
        "subprotocol",
    )

    def __init__(
        self,
        sock: socket.socket,
        request: Request,
        protocol: WebSocketProtocol,
        *,
        subprotocol: str | None = None,
        settings: ConnectionSettings | None = None,
        initial_data: bytes = b"",
        shutdown_event: gevent.event.Event | None = None,
    ) -> None:
        settings = settings or _DEFAULT_SETTINGS
        self.request = request
        self.subprotocol = subprotocol
        #: An id unique in this process ("#17"); the application may give its own with
        #: ``ws.registry.identify(ws, "alice")`` (ids starting with "#" are reserved).
        self.id = f"#{next(_ids)}"
        #: The registry of the host that accepted the connection (None elsewhere).
        self.registry: RegistryAPI | None = None
        #: The host that serves the connection (the server, a WSGI app's host; None for a client):
        #: ``ws.host.stats()``, ``ws.host.shutting_down``, ``ws.host.registry``.
        self.host: Any = None
        #: What upgrade middleware attached (``AuthMiddleware`` puts ``AuthInfo`` here).
        self.extensions: dict[Any, Any] = {}
        self.opened_at = time.monotonic()
        self._proto: Framing = protocol
        self._inbox = inbox = Inbox(settings.max_queue, self._on_room)
        self._transport = transport = Transport(
            sock,
            protocol,
            inbox,
            outbox_limit=settings.outbox_limit,
            send_timeout=settings.send_timeout,
            close_timeout=settings.close_timeout,
            initial_data=initial_data,
            # Not monkey-patched, a handler's blocking call (the stdlib's time.sleep, sockets)
            # does not let the hub run, and a held frame would wait as long.
            coalesce_writes=settings.coalesce_writes and self._coalesces and gevent.monkey.is_module_patched("socket"),
        )
        if settings.ping_interval or settings.idle_timeout:
            transport.keepalive = Keepalive(
                transport, settings.ping_interval, settings.ping_timeout, settings.idle_timeout
            )
        self._shutdown = shutdown_event
        # What the host installs on data messages before recv() returns them (rate limits, the
        # rooms wire format's envelopes): the message to return, or None to drop it.
        self._filter: Callable[[Message], Message | None] | None = None
        # The rooms wire format (ignitia.rooms.v1): the position the client last saw in each
        # room it resumes (used once, by the first join); None: a plain connection.
        self._resume: dict[str, Position] | None = None
        self._eof = False
        self._user_id: str | None = None  # set by the registry only (add, set_user)

    def _on_room(self) -> None:
        self._transport._update_reading()

    def extension(self, key: Any) -> Any:
        """An extension attached by middleware: ``ws.extension(AuthInfo).user_id``.

        Raises:
            KeyError: no middleware attached one under ``key`` (the message says so in one
                line: ``AuthMiddleware`` with a static token attaches ``AuthInfo`` only
                with ``user_id=``).
        """
        try:
            return self.extensions[key]
        except KeyError:
            name = getattr(key, "__qualname__", None) or repr(key)[:60]
            raise KeyError(f"no middleware attached {name} to this connection") from None

    @property
    def user_id(self) -> str | None:
        """The user this connection belongs to; None for none (read-only).

        The registry sets it: from the ``AuthInfo`` that ``AuthMiddleware`` attached, or with
        ``ws.registry.set_user(ws, user_id)``. Several connections may have the same user (two
        tabs); ``registry.disconnect(user_id)`` closes them all. It stays after the close.

        Example:
            >>> from ignitia_sync import AuthInfo, AuthMiddleware, Router
            >>> from ignitia_sync.testing import TestClient
            >>> auth = AuthMiddleware(lambda token: AuthInfo(token))
            >>> app = Router().websocket("/", lambda ws: ws.send_text(f"you are {ws.user_id}"), middleware=[auth])
            >>> with TestClient(app) as client:
            ...     client.connect("/?token=alice").recv(timeout=5).data
            'you are alice'
        """
        return self._user_id

    @property
    def server(self) -> Any:
        """The same as :attr:`host` (its name before every host could serve a connection)."""
        return self.host

    @property
    def shutting_down(self) -> bool:
        """True once the host that accepted this connection has begun to stop."""
        return self._shutdown is not None and self._shutdown.is_set()

    # -- receiving ------------------------------------------------------------------

    def recv(self, timeout: float | None = None, *, until_shutdown: bool = False) -> Message | None:
        """Wait for the next message; ``None`` once the connection is closed.

        Pings and pongs are delivered too (pings are already answered; only the last few
        are kept for a handler that does not read). A Close message is delivered with the
        peer's code and reason; every later call returns ``None``.

        Args:
            timeout: seconds to wait; then :class:`TimeoutError` (None: no limit).
            until_shutdown: also return ``None`` as soon as the host begins to stop (the
                connection is still open then: :attr:`shutting_down` is True).

        Raises:
            RuntimeError: called from an OS thread other than the one that serves the
                connection (as :meth:`send` and :meth:`close`).

        Example::

            def handler(ws: WebSocketConnection) -> None:
                try:
                    message = ws.recv(timeout=30)
                except TimeoutError:
                    ws.close(1000, "quiet for too long")
        """
        transport = self._transport
        if transport._thread != real_get_ident():
            transport.check_thread()
        # Inline, not a Deadline: this is the per-message path (no object per recv()).
        deadline = None if timeout is None else time.monotonic() + timeout
        shutdown = self._shutdown if until_shutdown else None
        inbox = self._inbox
        while not self._eof:
            item = inbox.get(None if deadline is None else deadline - time.monotonic(), shutdown)
            kind = type(item)
            if kind is Text or kind is Binary:
                if self._filter is not None:
                    item = self._filter(item)
                    if item is None:  # dropped (over a rate limit, a bad envelope)
                        if self.closed:
                            self._eof = True
                            return None
                        continue
                return item  # type: ignore[no-any-return]
            if item is EOF:
                self._eof = True
                return None
            if item is TIMEOUT:
                raise TimeoutError(f"no message within {timeout}s")
            if item is SHUTDOWN:
                return None
            if item is FAILED:
                transport.caught_up()
                continue
            return item  # type: ignore[no-any-return]
        return None

    def recv_json(self, timeout: float | None = None) -> Any:
        """The next data message, decoded as JSON (text or UTF-8 binary).

        Raises:
            ConnectionClosed: the connection closed first.
            MessageDecodeError: the message is not valid JSON.
            TimeoutError: nothing came within ``timeout`` seconds.

        Example:
            >>> def handler(ws: WebSocketConnection) -> None:
            ...     order = ws.recv_json(timeout=30)
            ...     ws.send_json({"accepted": order["id"]})
            >>> from ignitia_sync import Router
            >>> from ignitia_sync.testing import TestClient
            >>> with TestClient(Router().websocket("/orders", handler)) as client:
            ...     ws = client.connect("/orders")
            ...     ws.send_json({"id": 7})
            ...     ws.recv_json(timeout=5)
            {'accepted': 7}
        """
        while True:
            message = self.recv(timeout)
            if message is None:
                raise ConnectionClosed(self.close_code or 1006, self.close_reason)
            if type(message) is Text:
                return message.decode_json()
            if type(message) is Binary:
                try:
                    text = bytes(message.data).decode()
                except UnicodeDecodeError as exc:
                    raise MessageDecodeError(f"a binary message that is not UTF-8 JSON: {exc}") from None
                return Text(text).decode_json()

    def recv_timeout(self, seconds: float) -> Message | None:
        """Like :meth:`recv`, but gives up after ``seconds`` (the guide's spelling).

        Returns ``None`` on timeout or once closed; :attr:`closed` tells the two apart.

        Example::

            def handler(ws: WebSocketConnection) -> None:
                if ws.recv_timeout(30) is None and not ws.closed:
                    ws.ping(b"keepalive")
        """
        try:
            return self.recv(seconds)
        except TimeoutError:
            return None

    def __iter__(self) -> Iterator[Message]:
        """Iterate over received messages until the connection closes."""
        # A callable iterator, not a generator: no generator frame per connection, and a
        # shallower stack for gevent to save while the handler waits (about 0.5 KiB).
        return iter(self.recv, None)

    # -- sending --------------------------------------------------------------------

    def send(self, message: Message | str | bytes) -> None:
        """Send one message (a ``str`` is text, ``bytes`` binary); waits for its turn.

        The message goes after everything queued to this peer. The call returns once the
        kernel has taken it, or fails after ``send_timeout`` seconds of a peer that does
        not read (which is then closed with 1008). When the handler sends while more
        received messages wait to be read (in a monkey-patched process), a small message
        is queued instead and leaves with its next replies, in order, in one system call
        as soon as the hub runs (``coalesce_writes``, on by default); a lost connection
        then shows at the next call. A Close message is :meth:`close`.

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        kind = type(message)
        if kind is Text:  # the echo's case first: one call to the framing, no dispatch there
            frame = self._proto.send_text(message.data)  # type: ignore[union-attr]
        elif kind is str:
            frame = self._proto.send_text(message)  # type: ignore[arg-type]
        elif isinstance(message, (bytes, bytearray, memoryview)):
            frame = self._proto.send_bytes(bytes(message))
        elif isinstance(message, Close):
            self._close_message(message)
            return
        else:
            frame = self._proto.send(message)  # type: ignore[arg-type]  # a str subclass: TypeError
        self._transport.send(frame)

    def send_text(self, text: str) -> None:
        """Send a text message. Example: ``ws.send_text("Acknowledged")``."""
        self._transport.send(self._proto.send_text(text))

    def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message. Example: ``ws.send_bytes(b"\\x00\\x01")``."""
        self._transport.send(self._proto.send_bytes(bytes(data)))

    def send_json(self, value: Any) -> None:
        """Send ``value`` as a JSON text message. Example: ``ws.send_json({"ok": True})``."""
        self.send(Message.json(value))

    def send_batch(self, messages: Iterable[Message]) -> None:
        """Send several messages with one system call (all checked and framed first).

        Example:
            >>> def handler(ws: WebSocketConnection) -> None:
            ...     ws.send_batch([Message.text("a"), Message.text("b")])
            >>> from ignitia_sync import Router
            >>> from ignitia_sync.testing import TestClient
            >>> with TestClient(Router().websocket("/", handler)) as client:
            ...     ws = client.connect("/")
            ...     [ws.recv(timeout=5).data for _ in range(2)]
            ['a', 'b']
        """
        messages = list(messages)
        for message in messages:
            _check_sendable(message)
        proto_send = self._proto.send
        frames = [proto_send(message) for message in messages]
        if frames:
            self._transport.send(b"".join(frames), len(frames))

    def ping(self, data: bytes | str = b"") -> None:
        """Send a ping (at most 125 bytes); the peer's pong arrives through :meth:`recv`."""
        self.send(Ping(data.encode() if isinstance(data, str) else bytes(data)))

    def pong(self, data: bytes | str = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat)."""
        self.send(Pong(data.encode() if isinstance(data, str) else bytes(data)))

    def send_nowait(self, message: Message) -> None:
        """Send ``message`` without ever blocking: at once if the socket takes it, else queued.

        It is checked and framed now, and goes out in order with everything else. Queued
        messages count against ``outbox_limit`` (1 MiB by default): a peer that does not
        read and stays over it is closed with 1008 "slow consumer". :meth:`close` sends
        what is queued before the Close frame. A Close message is :meth:`close`.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ValueError, TypeError: the message cannot be sent (a control payload over
                125 bytes, not a Message).
        """
        self._transport.check_thread()
        if isinstance(message, Close):
            self._close_message(message)
            return
        _check_sendable(message)
        if self._proto.state is not ProtocolState.OPEN:
            raise ConnectionClosed(self.close_code or 1006, self.close_reason)
        frame = self._proto.send(message)
        if not self._transport.push(frame, len(frame)):
            raise ConnectionClosed(self.close_code or 1008, self.close_reason or "slow consumer")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; idempotent, never blocks, never raises when closed.

        :meth:`recv` keeps delivering what the peer sent before its Close, then ``None``.
        Everything queued is sent before the Close frame. The TCP connection is dropped
        if that and the peer's answer take longer than ``close_timeout``.

        Raises:
            ValueError: ``code`` is not one an endpoint may send, or the reason is longer
                than 123 bytes.
        """
        if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"close code {code} cannot be sent")
        if len(reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        self._transport.close(code, reason)

    def close_with_reason(self, code: int, reason: str) -> None:
        """Close with a code and reason: ``ws.close_with_reason(1011, "Too many errors")``."""
        self.close(code, reason)

    def _close_message(self, message: Close) -> None:
        frame = message.frame
        self.close(frame.code, frame.reason) if frame is not None else self.close()

    # -- state ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the closing handshake has started or the connection is gone."""
        return self._proto.state is not ProtocolState.OPEN

    @property
    def close_code(self) -> int | None:
        """The code that ended the connection (the first Close frame's, 1006 if lost)."""
        return self._proto.close_code

    @property
    def close_reason(self) -> str:
        """The reason that came with :attr:`close_code`."""
        return self._proto.close_reason

    @property
    def state(self) -> str:
        """``"open"``, ``"closing"``, ``"draining"`` or ``"closed"`` (see :class:`~ignitia_sync.connection.transport.Phase`)."""
        return self._transport.phase.value

    @property
    def remote_address(self) -> tuple[Any, ...]:
        """The peer's address, as in ``ws.request.remote_address``."""
        return self.request.remote_address

    @property
    def latency(self) -> float | None:
        """Seconds the last keepalive ping took to be answered; None before the first."""
        keepalive = self._transport.keepalive
        return keepalive.latency if keepalive is not None else None

    @property
    def outbox_bytes(self) -> int:
        """Bytes queued without blocking (broadcasts, :meth:`send_nowait`) not yet written."""
        return self._transport.outbox_bytes

    @property
    def messages_in(self) -> int:
        """Messages received, control frames included."""
        return self._transport.messages_in

    @property
    def messages_out(self) -> int:
        """Messages sent or queued."""
        return self._transport.messages_out

    @property
    def bytes_in(self) -> int:
        """Bytes read from the socket."""
        return self._transport.bytes_in

    @property
    def bytes_out(self) -> int:
        """Bytes written to the socket."""
        return self._transport.bytes_out

    def __repr__(self) -> str:
        return f"<WebSocketConnection {self.id} {self.request.path!r} from {self.remote_address[0]} {self.state}>"

    # -- rooms ------------------------------------------------------------------------

    def join(self, room: str, since: Position | None = None) -> Recovery:
        """Join ``room`` in this connection's registry: ``ws.join("lobby")``.

        Once it returns, every later broadcast to the room reaches this connection, in order.
        ``since``: the position of the last message of the room this client saw (its
        reconnect); what the room's history holds after it is delivered first, then live
        messages, none twice. The :class:`~ignitia_sync.broadcast.positions.Recovery` says
        whether that was everything (``complete``), and if not why (``"too old"``, ``"epoch
        changed"``...). A client of the rooms wire format gives its position itself.

        Example:
            >>> from ignitia_sync import Router
            >>> from ignitia_sync.testing import TestClient
            >>> def chat(ws):
            ...     recovery = ws.join("lobby")
            ...     ws.send_text(f"joined at offset {recovery.position.offset}")
            ...     for message in ws:
            ...         ws.registry.broadcast(message, room="lobby")
            >>> with TestClient(Router().websocket("/chat", chat)) as client:
            ...     print(client.connect("/chat").recv(timeout=5).data)
            joined at offset 0
        """
        return self._require_registry().join(room, self, since)

    def leave(self, room: str) -> None:
        """Leave ``room`` (nothing happens if not a member)."""
        self._require_registry().leave(room, self)

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection is in."""
        return self.registry.rooms_of(self) if self.registry is not None else frozenset()

    def _require_registry(self) -> RegistryAPI:
        if self.registry is None:
            raise RuntimeError("this connection belongs to no registry")
        return self.registry


def _check_sendable(message: object) -> None:
    """Refuse, before anything is framed, a message that cannot be sent as it is."""
    kind = type(message)
    if kind is Text or kind is Binary:
        return
    if kind is Ping or kind is Pong:
        if len(message.data) > 125:  # type: ignore[attr-defined]
            raise ValueError("control frame payloads are limited to 125 bytes")
        return
    if isinstance(message, Close):
        raise TypeError("a Close is sent with close(), not in a batch")
    raise not_a_message(message)
