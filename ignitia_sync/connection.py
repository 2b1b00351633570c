"""A blocking WebSocket connection, safe to use from any greenlet.

Reading needs no greenlet of its own on a plain socket: an io watcher calls the connection
from gevent's hub whenever the socket is readable, and one non-blocking ``recv()`` feeds the
protocol, answers pings at once (also while the handler is busy) and puts complete messages
into a bounded inbox. A TLS socket, which may need to write in order to read, gets a reader
greenlet instead. When the inbox holds ``max_queue`` messages reading pauses, so TCP
backpressure reaches the peer. Every write goes through one lock, so frames from several
greenlets never interleave.

Example:
    >>> def echo(ws: WebSocketConnection) -> None:
    ...     for message in ws:
    ...         if isinstance(message, Message.Text):
    ...             ws.send_text(f"Echo: {message.data}")
"""

from __future__ import annotations

import itertools
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.lock
import gevent.socket
from gevent.hub import Waiter

from .exceptions import ConnectionClosed, ProtocolError
from .http import Request
from .message import Binary, Message, Ping, Pong, Text
from .protocol import ProtocolState, WebSocketProtocol

if TYPE_CHECKING:
    from .middleware import RateLimit
    from .registry import Registry
    from .server import Server

__all__ = ["WebSocketConnection"]

log = logging.getLogger("ignitia_sync.connection")

_READ_SIZE = 65536
_WRITE_CHUNK = 65536
_EOF = object()
_SKIP = object()  # a message dropped by the rate limit
_TIMEOUT = object()
_ids = itertools.count(1)
#: Close codes an application may send (RFC 6455 section 7.4, plus 3000-4999).
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class WebSocketConnection:
    """One open WebSocket: receive with :meth:`recv`, send with :meth:`send` and friends.

    It is made from an accepted socket, the parsed upgrade request and a protocol object,
    so the same class serves the built-in server and other hosts (a WSGI worker, a client).

    Args:
        sock: the connected (gevent-compatible) socket, after the 101 answer was sent.
        request: the upgrade request, with path parameters.
        protocol: the protocol state for this connection.
        subprotocol: the negotiated subprotocol, if any.
        max_queue: inbox size in messages; when full, the socket is not read.
        close_timeout: seconds to wait for the peer's part of the closing handshake.
        initial_data: bytes that arrived right after the request head.

    Example:
        >>> def handler(ws: WebSocketConnection) -> None:
        ...     ws.send_text("Connected successfully!")
        ...     while (message := ws.recv()) is not None:
        ...         match message:
        ...             case Message.Text(text):
        ...                 ws.send_text(f"Echo: {text}")
        ...             case Message.Close(_):
        ...                 break
    """

    __slots__ = (
        "__weakref__",
        "_close_timeout",
        "_close_timer",
        "_closed_event",
        "_discard",
        "_eof_seen",
        "_failure",
        "_flush_scheduled",
        "_idle_timeout",
        "_inbox",
        "_initial_data",
        "_last_activity",
        "_max_queue",
        "_outbox",
        "_outbox_bytes",
        "_outbox_limit",
        "_paused",
        "_ping_interval",
        "_ping_payload",
        "_ping_sent_at",
        "_ping_timeout",
        "_pong_timer",
        "_proto",
        "_rate_check",
        "_rate_limit",
        "_raw",
        "_reader",
        "_resume",
        "_slow_consumer",
        "_sock",
        "_socket_closed",
        "_started",
        "_timers",
        "_waiter",
        "_watcher",
        "_write_lock",
        "_writer",
        "bytes_in",
        "bytes_out",
        "extensions",
        "id",
        "latency",
        "messages_in",
        "messages_out",
        "opened_at",
        "registry",
        "request",
        "server",
        "subprotocol",
    )

    def __init__(
        self,
        sock: socket.socket,
        request: Request,
        protocol: WebSocketProtocol,
        *,
        subprotocol: str | None = None,
        max_queue: int = 16,
        close_timeout: float = 10.0,
        outbox_limit: int = 1 << 20,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        idle_timeout: float | None = None,
        initial_data: bytes = b"",
    ) -> None:
        if max_queue < 1 or outbox_limit < 1:
            raise ValueError("max_queue and outbox_limit must be at least 1")
        self.request = request
        self.subprotocol = subprotocol
        #: An id unique in this process; the application may give another with
        #: ``ws.registry.identify(ws, "alice")``.
        self.id = str(next(_ids))
        #: The registry of the server that accepted the connection (None elsewhere).
        self.registry: Registry | None = None
        #: The server that accepted the connection (None elsewhere).
        self.server: Server | None = None
        #: What upgrade middleware attached (``AuthMiddleware`` puts ``AuthInfo`` here).
        self.extensions: dict[Any, Any] = {}
        #: Seconds the last keepalive ping took to be answered; None before the first.
        self.latency: float | None = None
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self.opened_at = time.monotonic()
        self._rate_check: Callable[[Message], bool] | None = None
        self._rate_limit: RateLimit | None = None
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout or ping_interval
        self._idle_timeout = idle_timeout
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
        self._timers: list[Any] = []
        self._pong_timer: Any = None
        self._last_activity = self.opened_at
        self._outbox: deque[tuple[bytes | Message, int]] | None = None
        self._outbox_bytes = 0
        self._outbox_limit = outbox_limit
        self._writer: gevent.Greenlet[Any, Any] | None = None
        self._flush_scheduled = False
        self._slow_consumer = False
        self._sock = sock
        # The non-blocking OS socket under a plain gevent socket: broadcasts try it first.
        self._raw = sock._sock if type(sock) is gevent.socket.socket else None  # type: ignore[attr-defined]
        self._proto = protocol
        self._max_queue = max_queue
        self._close_timeout = close_timeout
        self._initial_data = initial_data
        # Received messages, read by one greenlet at a time (see _get()); made on first use,
        # as an empty deque takes ~760 bytes and many connections only listen.
        self._inbox: deque[Any] | None = None
        self._waiter: Waiter[Any] | None = None
        self._write_lock = gevent.lock.Semaphore()
        self._eof_seen = False
        self._discard = False
        self._started = False
        self._paused = False  # the inbox is full: the socket is not read
        self._failure: ProtocolError | None = None
        self._watcher: Any = None  # the io watcher that reads a plain socket
        self._reader: gevent.Greenlet[Any, Any] | None = None  # reads TLS; winds up either
        self._resume: gevent.event.Event | None = None  # wakes a paused reader greenlet
        self._close_timer: gevent.Greenlet[Any, Any] | None = None
        self._socket_closed = False
        self._closed_event: gevent.event.Event | None = None

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start reading and the keepalive timers. Hosts call this once."""
        if self._started:
            return
        self._started = True
        loop = gevent.get_hub().loop
        if self._raw is None:
            self._resume = gevent.event.Event()
            self._reader = gevent.spawn(self._read_loop)
        else:
            self._watcher = loop.io(self._raw.fileno(), 1)
            data, self._initial_data = self._initial_data, b""
            if data and not self._receive(data):
                self._end_reading()
            else:
                self._watcher.start(self._on_readable)
        if self._ping_interval:
            timer = loop.timer(self._ping_interval, self._ping_interval)
            timer.start(self._keepalive_ping)
            self._timers.append(timer)
        if self._idle_timeout:
            timer = loop.timer(self._idle_timeout / 4, self._idle_timeout / 4)
            timer.start(self._check_idle)
            self._timers.append(timer)

    def limit_messages(self, limit: RateLimit) -> None:
        """Apply a route's :class:`~ignitia_sync.middleware.RateLimit` to received messages."""
        from .middleware import message_checker

        self._rate_limit = limit
        self._rate_check = message_checker(limit, self)

    def extension(self, key: Any) -> Any:
        """An extension attached by middleware: ``ws.extension(AuthInfo).user_id``.

        Raises:
            KeyError: no middleware attached one under ``key``.
        """
        return self.extensions[key]

    @property
    def shutting_down(self) -> bool:
        """True once the server that accepted this connection has begun to stop."""
        return self.server is not None and self.server.shutdown_event.is_set()

    # -- keepalive (hub callbacks: they never block) ------------------------------------

    def _keepalive_ping(self) -> None:
        if self._ping_payload is not None or self._proto.state is not ProtocolState.OPEN:
            return
        self._ping_payload = next(_ids).to_bytes(8, "big")
        self._ping_sent_at = time.monotonic()
        self.enqueue(Ping(self._ping_payload), 0)
        self._pong_timer = gevent.get_hub().loop.timer(self._ping_timeout or 20.0)
        self._pong_timer.start(self._keepalive_timeout)

    def _on_pong(self, payload: bytes) -> None:
        if payload != self._ping_payload:
            return
        self.latency = time.monotonic() - self._ping_sent_at
        self._ping_payload = None
        if self._pong_timer is not None:
            self._pong_timer.close()
            self._pong_timer = None

    def _keepalive_timeout(self) -> None:
        """The peer did not answer a ping in time: it is gone; no closing handshake."""
        log.info("closing %s: keepalive ping timeout", self)
        data = self._proto.fail(1011, "keepalive ping timeout")
        if self._raw is not None:
            try:
                self._raw.send(data)
            except OSError:
                pass
        self._abort()

    def _check_idle(self) -> None:
        if self._idle_timeout and time.monotonic() - self._last_activity >= self._idle_timeout and not self.closed:
            log.info("closing %s: idle for %.0fs", self, self._idle_timeout)
            gevent.spawn(self.close, 1001, "idle timeout")

    def finish(self, code: int = 1000, reason: str = "") -> None:
        """End the connection once its handler is done; returns when the socket is closed.

        Starts the closing handshake with ``code`` unless one is under way, waits up to
        ``close_timeout`` for the peer's part, then drops the TCP connection. Hosts call it.
        """
        self._discard = True
        self._inbox = None
        if self._paused:
            self._resume_reading()
        self.close(code, reason)
        if not self._socket_closed:  # reading ends with the closing handshake, or times out
            self._closed_event = gevent.event.Event()
            self._closed_event.wait(self._close_timeout)
        if self._reader is not None:
            self._reader.kill(block=False)
        if self._close_timer is not None:
            self._close_timer.kill(block=False)
        if self._writer is not None:
            self._writer.kill(block=False)
        for timer in self._timers:
            timer.close()
        if self._pong_timer is not None:
            self._pong_timer.close()
        self._abort()

    # -- receiving ------------------------------------------------------------------

    def recv(self) -> Message | None:
        """Wait for the next message; ``None`` once the connection is closed.

        Pings and pongs are delivered too (pings are already answered). A Close message
        is delivered with the peer's code and reason; every later call returns ``None``.
        The wait ends at the latest when the connection closes.
        """
        while not self._eof_seen:
            message = self._take(self._get(None))
            if message is not _SKIP:
                return message  # type: ignore[no-any-return]
        return None

    def recv_timeout(self, seconds: float) -> Message | None:
        """Like :meth:`recv`, but gives up after ``seconds``.

        Returns ``None`` on timeout or once closed; :attr:`closed` tells the two apart.

        Example:
            >>> def handler(ws: WebSocketConnection) -> None:
            ...     if ws.recv_timeout(30) is None and not ws.closed:
            ...         ws.ping(b"keepalive")
        """
        deadline = time.monotonic() + seconds
        while not self._eof_seen:
            item = self._get(max(0.0, deadline - time.monotonic()))
            if item is _TIMEOUT:
                return None
            message = self._take(item)
            if message is not _SKIP:
                return message  # type: ignore[no-any-return]
        return None

    def _get(self, timeout: float | None) -> Any:
        """The next inbox item, waiting at most ``timeout`` seconds (then ``_TIMEOUT``)."""
        inbox = self._inbox
        if inbox:
            return inbox.popleft()
        if self._waiter is not None:
            raise RuntimeError("another greenlet is already waiting in recv() on this connection")
        waiter: Waiter[Any] = Waiter()
        self._waiter = waiter
        timer = None
        if timeout is not None:
            timer = gevent.get_hub().loop.timer(timeout)
            timer.start(waiter.switch, _TIMEOUT)
        try:
            woken = waiter.get()
        finally:
            self._waiter = None
            if timer is not None:
                timer.close()
        inbox = self._inbox
        if woken is _TIMEOUT and not inbox:
            return _TIMEOUT
        assert inbox is not None  # only _put() wakes with None
        return inbox.popleft()

    def _put(self, item: Any) -> None:
        """Add to the inbox and wake the greenlet waiting in recv(), if any."""
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            gevent.get_hub().loop.run_callback(waiter.switch, None)

    def _inbox_full(self) -> bool:
        inbox = self._inbox
        return inbox is not None and len(inbox) >= self._max_queue

    def _take(self, item: Any) -> Any:
        if item is _EOF:
            self._eof_seen = True
            return None
        if self._paused and not self._inbox_full():
            self._resume_reading()
        if self._rate_check is not None and (type(item) is Text or type(item) is Binary):
            if not self._rate_check(item):
                return self._rate_limited()
        return item

    def _rate_limited(self) -> Any:
        limit = self._rate_limit
        assert limit is not None
        if limit.action == "close":
            log.info("closing %s: rate limit exceeded", self)
            self.close(1008, "rate limit exceeded")
            self._eof_seen = True
            return None
        try:
            self.send_text(limit.reply)
        except ConnectionClosed:
            pass
        return _SKIP

    def __iter__(self) -> Iterator[Message]:
        """Iterate over received messages until the connection closes."""
        while (message := self.recv()) is not None:
            yield message

    # -- sending --------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Send one message of any kind; blocks while the kernel's send buffer is full.

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        with self._write_lock:
            self._write_locked(self._proto.send(message))
        self.messages_out += 1

    def send_text(self, text: str) -> None:
        """Send a text message. Example: ``ws.send_text("Acknowledged")``."""
        self.send(Text(text))

    def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message. Example: ``ws.send_bytes(b"\\x00\\x01")``."""
        self.send(Binary(bytes(data)))

    def send_json(self, value: Any) -> None:
        """Send ``value`` as a JSON text message. Example: ``ws.send_json({"ok": True})``."""
        self.send(Message.json(value))

    def send_batch(self, messages: Iterable[Message]) -> None:
        """Send several messages with one system call (all framed first, then written).

        Example:
            >>> def handler(ws: WebSocketConnection) -> None:
            ...     ws.send_batch([Message.text("a"), Message.text("b")])
        """
        with self._write_lock:
            proto_send = self._proto.send
            frames = [proto_send(message) for message in messages]
            self._write_locked(b"".join(frames))
        self.messages_out += len(frames)

    def ping(self, data: bytes | str = b"") -> None:
        """Send a ping (at most 125 bytes); the peer's pong arrives through :meth:`recv`."""
        self.send(Ping(data.encode() if isinstance(data, str) else bytes(data)))

    def pong(self, data: bytes | str = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat)."""
        self.send(Pong(data.encode() if isinstance(data, str) else bytes(data)))

    def send_nowait(self, message: Message) -> None:
        """Send ``message`` without ever blocking: at once if the socket takes it, else queued, in order.

        Queued messages count against the outbox limit (``outbox_limit``, 1 MiB by
        default): a peer that does not read and stays over it is closed with 1008
        "slow consumer". :meth:`close` sends what is queued before the Close frame.

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        if self._proto.state is not ProtocolState.OPEN or self._slow_consumer:
            raise ConnectionClosed(self.close_code or 1006, self.close_reason)
        self.enqueue(message, _payload_size(message))

    def enqueue(self, item: bytes | Message, size: int) -> bool:
        """Queue a Message, or frame bytes made by :func:`~ignitia_sync.protocol.encode_frame`.

        Used by :meth:`send_nowait` and by broadcasts, which frame a message once for all
        peers that share plain framing. Returns False when the connection cannot take it.
        """
        if self._proto.state is not ProtocolState.OPEN or self._slow_consumer:
            return False
        if self._outbox_bytes + size > self._outbox_limit:
            self._fail_slow_consumer()
            return False
        outbox = self._outbox
        if outbox is None:
            outbox = self._outbox = deque()
        self.messages_out += 1
        outbox.append((item, size))
        self._outbox_bytes += size
        if self._writer is None and not self._flush_scheduled:
            # The first message since the last flush goes out at once; what follows in this
            # turn of the event loop is queued and leaves together when the caller yields, so
            # a burst of broadcasts costs each peer two system calls, not one per message.
            self._flush_scheduled = True
            gevent.get_hub().loop.run_callback(self._flush_outbox)
            if len(outbox) == 1:
                self._send_queued()
        return True

    @property
    def plain_framing(self) -> bool:
        """True when frames to this peer need no per-connection state (no compression)."""
        return self._proto.plain_framing

    @property
    def outbox_bytes(self) -> int:
        """Bytes of queued messages not yet written to the socket."""
        return self._outbox_bytes

    def _flush_outbox(self) -> None:
        """In the hub, once the greenlets that queued messages have yielded: send them."""
        self._flush_scheduled = False
        self._send_queued()

    def _send_queued(self) -> None:
        """Write what is queued without blocking; a writer greenlet does the rest."""
        outbox = self._outbox
        if not outbox or self._writer is not None:
            return
        if self._raw is not None and self._write_lock.acquire(blocking=False):
            try:
                item, size = outbox[0]
                if len(outbox) == 1 and isinstance(item, bytes):  # one broadcast frame: as it is
                    outbox.popleft()
                    chunk, taken = item, size
                else:
                    chunk, taken = self._take_chunk(outbox)
                try:
                    sent = self._raw.send(chunk)
                except BlockingIOError:
                    sent = 0
                self.bytes_out += sent
                if sent < len(chunk):
                    rest = chunk[sent:]
                    outbox.appendleft((rest, len(rest)))
                    taken -= len(rest)
                self._outbox_bytes -= taken
            except (OSError, ConnectionClosed) as exc:
                log.debug("dropping the queue of %s: %s", self, exc)
                self._proto.lose()
                outbox.clear()
                self._outbox_bytes = 0
                return
            finally:
                self._write_lock.release()
        if outbox:
            self._writer = gevent.spawn(self._drain_outbox)

    def _take_chunk(self, outbox: deque[tuple[bytes | Message, int]]) -> tuple[bytes, int]:
        """Frame and join queued items, up to about 64 KiB; returns the bytes and their count."""
        chunk: list[bytes] = []
        taken = written = 0
        while outbox and written < _WRITE_CHUNK:
            item, size = outbox.popleft()
            data = item if type(item) is bytes else self._proto.send(item)  # type: ignore[arg-type]
            chunk.append(data)
            written += len(data)
            taken += size
        return b"".join(chunk), taken

    def _drain_outbox(self) -> None:
        outbox = self._outbox
        assert outbox is not None
        try:
            while outbox:
                with self._write_lock:
                    chunk, taken = self._take_chunk(outbox)
                    self._outbox_bytes -= taken
                    self._write_locked(chunk)
        except ConnectionClosed:
            outbox.clear()
            self._outbox_bytes = 0
        finally:
            self._writer = None

    def _fail_slow_consumer(self) -> None:
        if self._slow_consumer:
            return
        self._slow_consumer = True
        log.info("closing %s: slow consumer (%d bytes queued)", self, self._outbox_bytes)
        if self._outbox is not None:
            self._outbox.clear()
        self._outbox_bytes = 0
        gevent.spawn(self.close, 1008, "slow consumer")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; idempotent, never raises for a closed connection.

        :meth:`recv` keeps delivering what the peer sent before its Close, then ``None``.
        Messages queued with :meth:`send_nowait` or a broadcast are sent first. The TCP
        connection is dropped if they cannot be written, or the peer has not answered,
        within ``close_timeout``.

        Raises:
            ValueError: ``code`` is not one an endpoint may send.
        """
        if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"close code {code} cannot be sent")
        if not self._send_queue_first():
            self._abort()
            return
        with self._write_lock:
            data = self._proto.close(code, reason)
            if not data:
                return
            try:
                self._write_locked(data)
            except ConnectionClosed:
                return
        if self._proto.state is ProtocolState.CLOSING:
            self._close_timer = gevent.spawn_later(self._close_timeout, self._abort)

    def _send_queue_first(self) -> bool:
        """Before a Close: send what is queued; False if it did not drain within close_timeout."""
        if self._flush_scheduled or (self._outbox and self._writer is None):
            self._flush_scheduled = False
            self._writer = gevent.spawn(self._drain_outbox)
        writer = self._writer
        if writer is not None and writer is not gevent.getcurrent():
            writer.join(timeout=self._close_timeout)
            if not writer.dead:
                log.info("dropping %s: its queued messages did not drain in %.1fs", self, self._close_timeout)
                return False
        return True

    def close_with_reason(self, code: int, reason: str) -> None:
        """Close with a code and reason: ``ws.close_with_reason(1011, "Too many errors")``."""
        self.close(code, reason)

    def _write_locked(self, data: bytes) -> None:
        if not data:
            return
        self.bytes_out += len(data)
        try:
            # Usually one send() takes it all: try the OS socket itself, without gevent's
            # wrapper; only a full send buffer makes this greenlet wait in sendall().
            raw = self._raw
            if raw is not None:
                try:
                    sent = raw.send(data)
                except BlockingIOError:
                    sent = 0
            else:
                sent = self._sock.send(data)
            if sent < len(data):
                self._sock.sendall(memoryview(data)[sent:])
        except OSError:
            self._proto.lose()
            raise ConnectionClosed(1006, "") from None

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
    def remote_address(self) -> tuple[Any, ...]:
        """The peer's address, as in ``ws.request.remote_address``."""
        return self.request.remote_address

    def __repr__(self) -> str:
        return f"<WebSocketConnection {self.request.path} from {self.remote_address[0]} {self._proto.state.value}>"

    # -- rooms ------------------------------------------------------------------------

    def join(self, room: str) -> None:
        """Join ``room`` in this connection's registry: ``ws.join("lobby")``."""
        self._require_registry().join(room, self)

    def leave(self, room: str) -> None:
        """Leave ``room`` (nothing happens if not a member)."""
        self._require_registry().leave(room, self)

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection is in."""
        return self.registry.rooms_of(self) if self.registry is not None else frozenset()

    def _require_registry(self) -> Registry:
        if self.registry is None:
            raise RuntimeError("this connection belongs to no registry")
        return self.registry

    # -- reading ---------------------------------------------------------------------

    def _on_readable(self) -> None:
        """In the hub, when a plain socket is readable: one recv(), then deliver what it completes."""
        raw = self._raw
        assert raw is not None
        try:
            data: bytes | None = raw.recv(_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = None
        # The handler waiting in recv() is woken once, directly, after the whole read: one
        # switch instead of a callback per message, and a loop iteration sooner.
        waiter, self._waiter = self._waiter, None
        try:
            reading = self._receive(data)
        except Exception:  # a bug must not take the hub down: end this connection only
            log.exception("reading from %s failed", self)
            self._proto.lose()
            reading = False
        if not reading:
            self._end_reading()
        elif self._inbox_full() and not self._discard:
            self._paused = True
            self._watcher.stop()
        if waiter is not None:
            if self._inbox:
                waiter.switch(None)
            else:
                self._waiter = waiter

    def _read_loop(self) -> None:
        """The reader greenlet of a TLS connection."""
        recv = self._sock.recv
        data: bytes | None = self._initial_data
        self._initial_data = b""
        assert self._resume is not None
        try:
            while True:
                if data:
                    if not self._receive(data):
                        break
                    if self._inbox_full() and not self._discard:
                        self._paused = True
                        self._resume.clear()
                        self._resume.wait()
                    else:
                        gevent.sleep(0)  # a busy socket must not starve other connections
                try:
                    data = recv(_READ_SIZE)
                except OSError:
                    data = None
                if not data:
                    self._receive(data)
                    break
        finally:
            self._wind_up()

    def _resume_reading(self) -> None:
        self._paused = False
        if self._watcher is not None:
            self._watcher.start(self._on_readable)
        elif self._resume is not None:
            self._resume.set()

    def _end_reading(self) -> None:
        """Stop the io watcher; a short-lived greenlet does the (blocking) rest."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
            self._reader = gevent.spawn(self._wind_up)

    def _receive(self, data: bytes | None) -> bool:
        """Feed what the socket gave (``b""`` at its end, None if it failed).

        Returns False once reading should end; a protocol error is kept in ``_failure``.
        """
        proto = self._proto
        if data is None:
            proto.lose()
            return False
        self.bytes_in += len(data)
        self._last_activity = time.monotonic()
        if data:
            return self._deliver(proto, data)
        proto.receive_data(b"")
        self._deliver_rest(proto)
        return False

    def _deliver(self, proto: WebSocketProtocol, data: bytes) -> bool:
        """Feed ``data``; queue what it completes. False once the connection has ended."""
        proto.receive_data(data)
        put = self._put
        try:
            for message in proto.events():
                out = proto.data_to_send()
                if out:
                    self._send_reply(out)
                if type(message) is Pong and self._ping_payload is not None:
                    self._on_pong(message.data)
                self.messages_in += 1
                if not self._discard:
                    put(message)
        except ProtocolError as exc:
            log.info(
                "failing connection from %s on %s: %s (close code %d)",
                self.remote_address[0], self.request.path, exc.reason, exc.code,
            )
            self._failure = exc
            return False
        return proto.state is not ProtocolState.CLOSED

    def _deliver_rest(self, proto: WebSocketProtocol) -> None:
        """Queue what the end of the stream completes (the peer is gone: nothing to answer)."""
        try:
            for message in proto.events():
                if not self._discard:
                    self._put(message)
        except ProtocolError as exc:
            log.info("connection from %s ended inside a bad frame: %s", self.remote_address[0], exc.reason)

    def _send_reply(self, data: bytes) -> None:
        """Queue a protocol reply (a pong, the answer to a Close) and write it if we can; never blocks."""
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append((data, 0))  # replies do not count against the outbox limit
        self._send_queued()

    def _wind_up(self) -> None:
        """Once reading has ended: fail a bad connection, write what is queued, close the socket."""
        try:
            failure = self._failure
            if failure is not None:
                self._let_handler_catch_up()
            # What is queued (the answer to a Close, broadcasts) goes out, bounded, and before
            # the Close of a failed connection: no frame may follow a Close.
            if self._send_queue_first() and failure is not None:
                with gevent.Timeout(self._close_timeout), self._write_lock:
                    self._write_locked(self._proto.fail(failure.code))
        except (ConnectionClosed, gevent.Timeout):
            log.info("dropping %s: could not send its Close within %.1fs", self, self._close_timeout)
        finally:
            self._put(_EOF)
            self._drain_and_close()

    def _let_handler_catch_up(self) -> None:
        """Give the handler a moment to answer the messages that preceded a bad frame."""
        deadline = time.monotonic() + 1.0
        gevent.sleep(0)
        while self._inbox and not self._discard and time.monotonic() < deadline:
            gevent.sleep(0.005)
        gevent.sleep(0)

    def _drain_and_close(self) -> None:
        """Half-close, read until the peer's FIN (bounded), then close the socket.

        Reading to the end keeps the kernel from answering unread data with a reset that
        could destroy our Close frame before the peer reads it.
        """
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self._close_timeout
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)  # nothing writes any more: only this read waits
                if not sock.recv(_READ_SIZE):
                    break
        except OSError:  # includes the timeout
            pass
        finally:
            self._abort()

    def _abort(self) -> None:
        """Drop the TCP connection now."""
        if self._proto.state is not ProtocolState.CLOSED:
            self._proto.lose()
        if self._watcher is not None:  # reading had not ended: the handler must learn it
            self._watcher.close()
            self._watcher = None
            self._put(_EOF)
        try:
            self._sock.close()
        except OSError:
            pass
        self._socket_closed = True
        if self._closed_event is not None:
            self._closed_event.set()


def _payload_size(message: Message) -> int:
    """The bytes a message's payload takes on the wire (before any compression)."""
    data = getattr(message, "data", b"")
    if isinstance(data, str) and not data.isascii():
        return len(data.encode())
    return len(data)
