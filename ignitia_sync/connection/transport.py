"""A connection's transport on gevent: reading, the one ordered writer, flow control, teardown.

**Writing.** Every byte for the peer goes through one queue of whole frames, in order:
handler sends, ``send_batch``, broadcasts, ``send_nowait``, the Close. Control replies (the
pong for the latest ping, the keepalive ping) wait in two slots and enter the stream at the
next frame boundary, ahead of queued data. Whoever finds the queue idle may write it with one
non-blocking ``send()`` (no yield can come between); once the kernel's buffer is full, a
writer greenlet owns the socket until the queue is empty, and nothing else writes meanwhile.
So frames never interleave, and nothing is queued after our Close: the protocol refuses to
frame data once a Close is sent, and pre-framed broadcasts check the same state.

**Reading.** A plain socket is read by an io watcher in the hub (no greenlet): one
non-blocking ``recv()`` feeds the protocol and the inbox, and the waiting handler is woken
once. A TLS socket gets a reader greenlet (an SSL socket may write in order to read).
Reading pauses while the inbox is full, and while a pong waits behind a peer that does not
read (TCP backpressure in both directions).

**The end.** One state (:class:`Phase`) and one :meth:`Transport.teardown` serve every way a
connection ends: CLOSING once a Close is queued, DRAINING once the closing handshake is
over (or failed) and the last bytes go out before a half-close and a read to EOF, CLOSED
once the socket and every watcher, timer and greenlet are released. ``close_timeout``
bounds CLOSING and DRAINING together.

Example:
    >>> Phase.OPEN.value
    'open'
"""

from __future__ import annotations

import logging
import socket
import ssl as _stdlib_ssl
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

import gevent
import gevent.event
import gevent.socket
import gevent.ssl
from gevent import getcurrent
from gevent.hub import Waiter

from ..exceptions import ConnectionClosed, ProtocolError
from ..message import Binary, Message, Ping, Pong, Text
from ..sansio.http import escape_for_log
from ..sansio.protocol import ProtocolState, WebSocketProtocol, encode_shared_frame
from .inbox import EOF, FAILED, TIMEOUT, Inbox
from .outbox import Outbox
from .threads import allocate_real_lock, call_soon, real_get_ident

__all__ = ["Phase", "Transport", "gevent_socket"]

log = logging.getLogger("ignitia_sync.connection")
#: Guards every transport's count of bytes handed over from other threads (an OS lock,
#: never held across anything that could block or switch).
_HANDOVER_LOCK = allocate_real_lock()
#: What one handed-over broadcast holds besides its frame (the hub's callback and its
#: arguments, about 240 bytes measured): counted too, so tiny messages are bounded as well.
_HANDOVER_OVERHEAD = 256

_READ_SIZE = 65536
#: While wsproto parses (fragments, compression, unusual frames: ~10x the CPU per frame of
#: the fast path), reads are smaller, so one peer's read cannot hold the hub for long.
_SLOW_READ_SIZE = 8192
#: A pong waiting behind a writer that got nothing out for this long: the peer has
#: stopped reading, so we stop reading its pings (a slow but steady reader is not paused).
_STALLED = 0.25
#: How long the handler gets to answer what came before a bad frame.
_CATCH_UP = 1.0
#: Write coalescing (see Transport.send): frames under this many bytes wait for the
#: replies to the messages already received, at most COALESCE_FRAMES of them (256 KiB).
COALESCE_FRAME = 8192
COALESCE_FRAMES = 32


class Phase(Enum):
    """Where a connection's transport is in its life (one state for every ending)."""

    OPEN = "open"  # data flows both ways
    CLOSING = "closing"  # a Close is queued or sent; waiting for the peer's
    DRAINING = "draining"  # the handshake is over or failed: last bytes out, then EOF
    CLOSED = "closed"  # the socket is closed and everything released


def gevent_socket(sock: socket.socket) -> socket.socket:
    """A gevent socket for ``sock``: a stdlib socket is wrapped (same fd), never read blocking.

    Raises:
        TypeError: a stdlib ``ssl.SSLSocket`` (it cannot be wrapped; use gevent's ssl).

    Example:
        >>> import socket as stdlib
        >>> a, b = stdlib.socketpair()
        >>> type(gevent_socket(a)).__module__
        'gevent._socket3'
    """
    if type(sock) is gevent.socket.socket or isinstance(sock, (gevent.socket.socket, gevent.ssl.SSLSocket)):
        return sock
    if isinstance(sock, _stdlib_ssl.SSLSocket):
        raise TypeError("a stdlib ssl.SSLSocket would block the hub; wrap the socket with gevent.ssl")
    if isinstance(sock, socket.socket):
        return gevent.socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    raise TypeError(f"not a socket: {sock!r}")


class Transport:
    """The I/O of one WebSocket: a socket, a protocol object and an inbox, after the 101.

    Hosts make one, call :meth:`start`, and :meth:`finish` when the handler is done; the
    user-facing :class:`~ignitia_sync.connection.WebSocketConnection` sends through it.

    Args:
        sock: the connected socket (a stdlib socket is wrapped, see :func:`gevent_socket`).
        protocol: the negotiated protocol state.
        inbox: where received messages go.
        outbox_limit: bytes queued without blocking before the peer is a slow consumer.
        send_timeout: how long a blocking send waits for its turn (None: no limit).
        close_timeout: bound of the closing handshake and of what is sent before it.
        initial_data: bytes that arrived right after the request head.
        coalesce_writes: while received messages wait in the inbox, a small frame the
            handler (the greenlet that reads the inbox) gives :meth:`send` waits for its
            replies to them and leaves with those, in one system call as soon as the hub
            runs (see :meth:`send`). The connection turns it off where a handler's
            blocking call would not let the hub run (a process that is not monkey-patched).
    """

    __slots__ = (
        "__weakref__",
        "_catch_up_timer",
        "_close_timeout",
        "_close_timer",
        "_closed_event",
        "_coalesce",
        "_eof_seen",
        "_failure",
        "_flush_scheduled",
        "_handed_over",
        "_initial_data",
        "_loop",
        "_outbox",
        "_progress_at",
        "_raw",
        "_reader",
        "_reading",
        "_reply_waiting",
        "_resume",
        "_send_timeout",
        "_send_waiters",
        "_sock",
        "_thread",
        "_watcher",
        "_writer",
        "bytes_in",
        "bytes_out",
        "inbox",
        "keepalive",
        "last_data_at",
        "messages_in",
        "messages_out",
        "phase",
        "proto",
    )

    def __init__(
        self,
        sock: socket.socket,
        protocol: WebSocketProtocol,
        inbox: Inbox,
        *,
        outbox_limit: int = 1 << 20,
        send_timeout: float | None = 30.0,
        close_timeout: float = 10.0,
        initial_data: bytes = b"",
        coalesce_writes: bool = True,
    ) -> None:
        self._sock = sock = gevent_socket(sock)
        # The non-blocking OS socket under a plain gevent socket: written and read directly.
        self._raw = sock._sock if type(sock) is gevent.socket.socket else None  # type: ignore[attr-defined]
        self.proto = protocol
        self.inbox = inbox
        self.phase = Phase.OPEN
        self.keepalive: Any = None  # set by the connection when keepalive or idle timers are on
        self._send_timeout = send_timeout
        self._close_timeout = close_timeout
        self._coalesce = coalesce_writes
        self._initial_data = initial_data
        self._loop: Any = gevent.get_hub().loop
        self._thread = 0
        # The outbound stream: ordered frames, control slots, the outbox_limit budget.
        self._outbox = Outbox(outbox_limit)
        self._progress_at = 0.0  # when the writer last got bytes out
        # Bytes of broadcasts handed over from other threads, not yet pushed by ours; -1
        # once a slow-consumer close was handed over for them (see push_message_threadsafe).
        self._handed_over = 0
        self._send_waiters: list[tuple[int, Waiter[Any]]] | None = None
        self._writer: gevent.Greenlet[Any, Any] | None = None
        self._flush_scheduled = False
        self._watcher: Any = None
        self._reader: gevent.Greenlet[Any, Any] | None = None
        self._resume: gevent.event.Event | None = None
        self._reading = True
        self._reply_waiting = False  # a pong was made while the peer was not reading
        self._eof_seen = False
        self._failure: ProtocolError | None = None
        self._catch_up_timer: Any = None
        self._close_timer: Any = None
        self._closed_event: gevent.event.Event | None = None
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self.last_data_at = time.monotonic()

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start reading in the current hub (hosts call this once, in the serving thread)."""
        if self._thread:
            return
        self._loop = gevent.get_hub().loop
        self._thread = real_get_ident()
        data, self._initial_data = self._initial_data, b""
        if self._raw is None:
            self._resume = gevent.event.Event()
            self._reader = gevent.spawn(self._read_loop, data)
        else:
            self._watcher = self._loop.io(self._raw.fileno(), 1)
            if data:
                self._on_data(data)
            if self.phase is not Phase.CLOSED and self._watcher is not None and self._reading:
                self._watcher.start(self._on_readable)
        if self.keepalive is not None and self.phase is not Phase.CLOSED:
            self.keepalive.start(self._loop)

    def check_thread(self) -> None:
        """Raise RuntimeError when called from an OS thread other than the serving one."""
        if self._thread and self._thread != real_get_ident():
            raise RuntimeError(
                "a connection may only be used from the thread that serves it; from another thread use "
                "registry.call_threadsafe() or registry.broadcast_threadsafe()"
            )

    def run_in_own_thread(self, func: Callable[..., Any], *args: Any) -> bool:
        """``func(*args)`` now when called from the serving thread, else handed to it (non-blocking only).

        Returns what ``func`` returned (as a bool), or whether the hand-over was accepted.
        """
        if not self._thread or self._thread == real_get_ident():
            return bool(func(*args))
        return self.call_soon_threadsafe(func, *args)

    def call_soon_threadsafe(self, func: Callable[..., Any], *args: Any) -> bool:
        """Run ``func(*args)`` soon in the hub that serves this connection, from any thread.

        ``func`` runs as a hub callback, so it must not block (``push``, ``close`` do not).
        Returns False when that hub is gone (the connection has ended meanwhile).
        """
        return call_soon(self._loop, func, *args)

    def finish(self, code: int = 1000, reason: str = "") -> None:
        """The handler is done: close with ``code`` unless closing already; return once closed.

        Waits at most ``close_timeout`` (the close timer's bound), then drops the connection.
        """
        try:
            self.inbox.detach()
            if self._failure is not None:
                self._fail_after_catch_up()
            elif self.phase is Phase.OPEN:
                self.close(code, reason)
            self._update_reading()
            if self.phase is not Phase.CLOSED:
                self._closed_event = event = gevent.event.Event()
                event.wait(self._close_timeout + 1.0)
        finally:
            self.teardown()

    def teardown(self) -> None:
        """Release everything now: socket, watcher, timers, greenlets; the one end of every path."""
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        if self.proto.state is not ProtocolState.CLOSED:
            self.proto.lose()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        current = gevent.getcurrent()
        for greenlet in (self._reader, self._writer):
            if greenlet is not None and greenlet is not current:
                greenlet.kill(block=False)
        self._reader = self._writer = None
        if self._resume is not None:
            self._resume.set()
        for timer in (self._close_timer, self._catch_up_timer):
            if timer is not None:
                timer.close()
        self._close_timer = self._catch_up_timer = None
        if self.keepalive is not None:
            self.keepalive.stop()
        self._outbox.clear()
        self._wake_senders(fail_all=True)
        try:
            self._sock.close()
        except OSError:
            pass
        self.inbox.put(EOF)
        self.inbox.wake_soon()
        if self._closed_event is not None:
            self._closed_event.set()

    # -- writing ----------------------------------------------------------------------

    def send(self, frame: bytes, count: int = 1) -> None:
        """Write ``frame`` after everything queued; blocks until the kernel has it.

        When the handler (the greenlet that reads the inbox) sends while received messages
        still wait in the inbox (it will answer them before it waits again), a frame under
        :data:`COALESCE_FRAME` bytes is queued instead, up to :data:`COALESCE_FRAMES` of
        them: they leave together, in order, in one system call, as soon as the hub runs
        (the handler waits in recv(), or in patched I/O that has to wait) or anything else is sent.
        A lost connection then surfaces at the next call. Other greenlets (an acknowledged
        ``send_to``) always write before they return.

        Raises:
            ConnectionClosed: the connection ended, or the peer read nothing for
                ``send_timeout`` seconds (then it is closed with 1008 "slow consumer").
        """
        if self._thread != real_get_ident():
            self.check_thread()
        self.messages_out += count
        raw = self._raw
        outbox = self._outbox
        if self._writer is None and raw is not None:
            queue = outbox.queue
            inbox = self.inbox
            if (
                self._coalesce
                and inbox.pending()
                and len(frame) < COALESCE_FRAME
                and (not queue or len(queue) < COALESCE_FRAMES)
                and inbox.reader is getcurrent()
            ):
                outbox.append(frame, 0)
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self._loop.run_callback(self._scheduled_flush)
                return
            if not queue and not outbox.pong and not outbox.ping:
                # The common case: nothing queued, one send() takes it all.
                try:
                    sent = raw.send(frame)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._lost()
                    raise ConnectionClosed(1006, "") from None
                self.bytes_out += sent
                if sent == len(frame):
                    return
                outbox.append(frame, 0)
                outbox.head_sent = sent
                self._start_writer()
                if outbox.popped < outbox.pushed:
                    self._wait_written(outbox.pushed)
                return
        outbox.append(frame, 0)
        target = outbox.pushed
        self._flush()
        if outbox.popped < target:
            self._wait_written(target)

    def push(self, frame: bytes, counted: int) -> bool:
        """Queue ``frame`` without blocking (broadcasts, ``send_nowait``); False if refused.

        ``counted`` bytes count against ``outbox_limit``; past it the peer is closed with
        1008 "slow consumer". The first frame since the last flush is written at once; what
        follows in the same turn of the event loop leaves together when the caller yields.
        """
        if self.proto.state is not ProtocolState.OPEN:
            return False
        outbox = self._outbox
        if outbox.counted and outbox.counted + counted > outbox.limit:
            # (A message larger than the limit still goes when nothing else waits.)
            self.slow_consumer()
            return False
        outbox.append(frame, counted)
        self.messages_out += 1
        if self._writer is None and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.run_callback(self._scheduled_flush)
            if len(outbox.queue) == 1:  # type: ignore[arg-type]
                self._flush()
        return True

    def push_message(self, message: Message, shared: dict[Any, bytes], counted: int) -> bool:
        """:meth:`push` a broadcast: a frame shared with peers framed alike, or framed here.

        ``shared`` maps a framing key to the frame made for it (``None``: no extension);
        frames for a new key are made and added, so a broadcast compresses once per key.
        """
        proto = self.proto
        if proto.plain_framing:
            return self.push(shared[None], counted)
        if proto.state is not ProtocolState.OPEN:
            return False
        key = proto.framing_key
        if key is None:  # its own compressor, with context: frame here, in queue order
            return self.push(proto.send(message), counted)
        frame = shared.get(key)
        if frame is None:
            frame = shared[key] = encode_shared_frame(message, key)
        return self.push(frame, counted)

    def push_message_threadsafe(self, message: Message, shared: dict[Any, bytes], counted: int) -> bool:
        """:meth:`push_message` from any thread; False when refused.

        From another thread the message is handed to the serving thread's hub. What waits
        there (its frame, plus what each hand-over holds) counts against ``outbox_limit``
        together with what is queued: a handler that blocks its thread (an unpatched call
        under a threaded dev server) cannot pile up broadcasts.
        Past the limit the rest are refused and the peer is closed with 1008 "slow
        consumer" as soon as its thread runs its hub again.
        """
        if not self._thread or self._thread == real_get_ident():
            return self.push_message(message, shared, counted)
        held = counted + _HANDOVER_OVERHEAD
        with _HANDOVER_LOCK:
            waiting = self._handed_over
            # Together with what is already queued (read without the serving thread's help:
            # an int, at worst one push old).
            accepted = waiting >= 0 and (not waiting or waiting + self._outbox.counted + held <= self._outbox.limit)
            self._handed_over = waiting + held if accepted else -1
        if accepted:
            if self.call_soon_threadsafe(self._push_handed_over, message, shared, counted):
                return True
            with _HANDOVER_LOCK:  # that hub is gone: nothing will run there any more
                self._handed_over = -1
            return False
        if waiting >= 0:  # the first refusal: the close follows the deliveries already handed over
            self.call_soon_threadsafe(self.slow_consumer)
        return False

    def _push_handed_over(self, message: Message, shared: dict[Any, bytes], counted: int) -> None:
        with _HANDOVER_LOCK:
            if self._handed_over > 0:
                self._handed_over -= counted + _HANDOVER_OVERHEAD
        self.push_message(message, shared, counted)

    def send_ping(self, frame: bytes) -> None:
        """Queue a keepalive ping ahead of queued data, at the next frame boundary; never blocks."""
        self._outbox.ping = frame
        self._flush()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake: the Close goes after what is queued; never blocks."""
        self.check_thread()
        data = self.proto.close(code, reason)
        if not data:
            return
        self.phase = Phase.CLOSING
        self._outbox.append(data, 0)
        self._arm_close_timer()
        self._flush()

    def slow_consumer(self) -> None:
        """Close a peer that does not read with 1008: queued data is dropped (whole frames only)."""
        if self.proto.state is not ProtocolState.OPEN:
            return
        log.info("closing %s: slow consumer (%d bytes queued)", self._describe(), self._outbox.counted)
        self._outbox.cut()
        self._wake_senders()
        self.close(1008, "slow consumer")

    def fail(self, code: int, reason: str) -> None:
        """Fail a peer that is gone (keepalive timeout): a Close if it fits at once, then drop TCP."""
        log.info("closing %s: %s", self._describe(), reason)
        data = self.proto.fail(code, reason)
        if data and self._raw is not None and self._writer is None and not self._outbox.head_sent:
            try:
                self._raw.send(data)
            except OSError:
                pass
        self.teardown()

    @property
    def outbox_bytes(self) -> int:
        """Bytes queued without blocking and not yet written."""
        return self._outbox.counted

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        """Write what the socket takes now, without blocking; a writer greenlet does the rest."""
        if self._writer is not None or self.phase is Phase.CLOSED:
            return
        raw = self._raw
        outbox = self._outbox
        if raw is None:
            if outbox.queue or outbox.pong or outbox.ping:
                self._start_writer()
            else:
                self._written()
            return
        while True:
            chunk = outbox.next_chunk()
            if not chunk:
                break
            try:
                sent = raw.send(chunk)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._lost()
                return
            self.bytes_out += sent
            # No writer greenlet here, so no progress to note: only what was written.
            if outbox.mark_sent(sent) and self._send_waiters:
                self._wake_senders()
            if sent < len(chunk):
                self._start_writer()
                return
        self._written()

    def _mark_sent(self, sent: int) -> None:
        """Account for ``sent`` bytes of the last chunk: pop the frames now fully written."""
        if sent and self._writer is not None:
            self._progress_at = time.monotonic()
            if not self._reading:
                self._update_reading()
        if self._outbox.mark_sent(sent) and self._send_waiters:
            self._wake_senders()

    def _start_writer(self) -> None:
        if self._writer is None and self.phase is not Phase.CLOSED:
            self._progress_at = time.monotonic()
            self._writer = gevent.spawn(self._write_loop)

    def _write_loop(self) -> None:
        """The writer greenlet: owns the socket until the queue is empty."""
        sock = self._sock
        try:
            while self.phase is not Phase.CLOSED:
                chunk = self._outbox.next_chunk()
                if not chunk:
                    break
                self._outbox.inflight = len(chunk)
                sock.sendall(chunk)
                self._outbox.inflight = 0
                self.bytes_out += len(chunk)
                self._mark_sent(len(chunk))
        except OSError:
            self._writer = None
            self._lost()
            return
        except Exception:  # a bug must not leave the connection without a writer
            log.exception("writing to %s failed", self._describe())
            self._writer = None
            self.teardown()
            return
        self._outbox.inflight = 0
        self._writer = None
        if self.phase is not Phase.CLOSED:
            self._written()

    def _written(self) -> None:
        """Everything queued is out: resume reading if replies held it, half-close if ending."""
        self._reply_waiting = False
        if self.phase is Phase.DRAINING:
            self._shutdown_write()
        elif not self._reading:
            self._update_reading()

    def _wait_written(self, target: int) -> None:
        if self.phase is Phase.CLOSED:  # torn down while this frame was queued
            raise ConnectionClosed(self.proto.close_code or 1006, self.proto.close_reason)
        waiters = self._send_waiters
        if waiters is None:
            waiters = self._send_waiters = []
        waiter: Waiter[Any] = Waiter()
        waiters.append((target, waiter))
        timer = None
        if self._send_timeout is not None:
            timer = self._loop.timer(self._send_timeout)
            timer.start(waiter.switch, TIMEOUT)
        try:
            result = waiter.get()
        finally:
            if timer is not None:
                timer.close()
            current = self._send_waiters
            if current and (target, waiter) in current:
                current.remove((target, waiter))
        if result is TIMEOUT:
            log.info("%s: send() waited %.1fs for the peer to read", self._describe(), self._send_timeout)
            self.slow_consumer()
            raise ConnectionClosed(1008, "slow consumer")
        if result is not None:
            raise ConnectionClosed(self.proto.close_code or 1006, self.proto.close_reason)

    def _wake_senders(self, fail_all: bool = False) -> None:
        """Wake blocking senders whose frame is written (or was dropped, or never will be)."""
        waiters = self._send_waiters
        if not waiters:
            return
        keep = []
        popped, pushed = self._outbox.popped, self._outbox.pushed
        for target, waiter in waiters:
            if target <= popped and not fail_all:
                self._loop.run_callback(waiter.switch, None)
            elif fail_all or target > pushed:
                self._loop.run_callback(waiter.switch, "closed")
            else:
                keep.append((target, waiter))
        self._send_waiters = keep

    # -- reading ----------------------------------------------------------------------

    def _on_readable(self) -> None:
        """In the hub, when a plain socket is readable: one recv(), then deliver what it completes."""
        raw = self._raw
        assert raw is not None
        try:
            data: bytes | None = raw.recv(_READ_SIZE if self.proto.parsing_fast else _SLOW_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = None
        # The handler waiting in recv() is woken once, directly, after the whole read.
        inbox = self.inbox
        waiter = inbox.take_waiter()
        try:
            self._on_data(data)
        except Exception:  # a bug must not take the hub down: end this connection only
            log.exception("reading from %s failed", self._describe())
            self.teardown()
        inbox.wake(waiter)

    def _read_loop(self, data: bytes | None) -> None:
        """The reader greenlet of a TLS connection."""
        try:
            self._read_tls(data)
        except Exception:  # a bug must not leave the connection without a reader
            log.exception("reading from %s failed", self._describe())
            self.teardown()

    def _read_tls(self, data: bytes | None) -> None:
        recv = self._sock.recv
        resume = self._resume
        assert resume is not None
        while not self._closed():
            if data:
                self._on_data(data)
                self.inbox.wake_soon()
                gevent.sleep(0)  # a busy socket must not starve other connections
            while not self._reading and not self._closed():
                resume.clear()
                resume.wait()
            if self._closed():
                return
            try:
                data = recv(_READ_SIZE if self.proto.parsing_fast else _SLOW_READ_SIZE)
            except (OSError, ValueError):  # ValueError: the SSL object is gone
                data = None
            if not data:
                self._on_data(data)
                self.inbox.wake_soon()
                return

    def _on_data(self, data: bytes | None) -> None:
        """What the socket gave: bytes, ``b""`` at its end, None when it failed."""
        if data is None:  # a reset, or a read error: nothing more can be sent either
            self.teardown()
            return
        self.bytes_in += len(data)
        if not data:
            self._eof_seen = True
        if self.phase is Phase.DRAINING:  # the handshake is over: read to EOF, discard
            if not data:
                self.teardown()
            return
        if self._failure is not None:
            return
        proto = self.proto
        proto.receive_data(data)
        inbox = self.inbox
        got_data = False
        try:
            for message in proto.events():
                self.messages_in += 1
                kind = type(message)
                if kind is Text or kind is Binary:
                    got_data = True
                elif kind is Pong:
                    if self.keepalive is not None:
                        self.keepalive.on_pong(message.data)  # type: ignore[attr-defined]
                elif kind is Ping:
                    pong = proto.answer(message)  # type: ignore[arg-type]
                    if pong:
                        # Every ping is answered while the peer reads; behind a peer that
                        # does not, only the latest waits (RFC 6455 5.5.3) and reading pauses.
                        self._outbox.pong = pong
                        self._reply_waiting = True
                        if self._writer is None:
                            self._flush()
                inbox.put(message)
        except ProtocolError as exc:
            self._on_protocol_error(exc)
            return
        if got_data:
            self.last_data_at = time.monotonic()
        if proto.state is ProtocolState.CLOSED:  # the closing handshake is over, or EOF
            reply = proto.data_to_send()
            if reply:  # our answer to the peer's Close, after what is queued
                self._outbox.append(reply, 0)
            self._drain()
        elif not data:
            proto.lose()
            self._drain()
        elif inbox.full() or (self._reply_waiting and self._writer is not None):
            self._update_reading()

    def _on_protocol_error(self, exc: ProtocolError) -> None:
        log.info(
            "failing connection from %s: %s (close code %d)", self._describe(), escape_for_log(exc.reason), exc.code,
        )
        self._failure = exc
        self._update_reading()
        # The handler first answers the messages that came before the bad frame (bounded).
        if self.inbox.pending():
            self.inbox.put(FAILED)
            self._catch_up_timer = self._loop.timer(_CATCH_UP)
            self._catch_up_timer.start(self._fail_after_catch_up)
        else:
            self._fail_after_catch_up()

    def caught_up(self) -> None:
        """The handler has read everything before a bad frame: fail the connection now."""
        self._fail_after_catch_up()

    def _fail_after_catch_up(self) -> None:
        """Send the Close of a failed connection, after the handler's answers."""
        failure = self._failure
        if failure is None or self.phase in (Phase.DRAINING, Phase.CLOSED):
            return
        if self._catch_up_timer is not None:
            self._catch_up_timer.close()
            self._catch_up_timer = None
        data = self.proto.fail(failure.code)
        if data:
            self._outbox.append(data, 0)
        self._drain()

    def _drain(self) -> None:
        """The connection is over: send what is queued (bounded), half-close, read to EOF."""
        if self.phase in (Phase.DRAINING, Phase.CLOSED):
            return
        self.phase = Phase.DRAINING
        self._arm_close_timer()
        self.inbox.put(EOF)
        self._update_reading()
        if self._writer is None:
            self._flush()

    def _shutdown_write(self) -> None:
        """Our last byte is out: half-close; the peer's FIN (or the close timer) ends it."""
        if self._eof_seen:
            self.teardown()
            return
        try:
            # The socket itself, not SSLSocket.shutdown(), which drops the SSL object that
            # the reader still uses to see the peer's end.
            gevent.socket.socket.shutdown(self._sock, socket.SHUT_WR)
        except OSError:
            self.teardown()

    def _update_reading(self) -> None:
        """Read unless the inbox is full or a reply waits behind a peer that does not read."""
        if self.phase is Phase.CLOSED:
            return
        if self.phase is Phase.DRAINING:
            reading = True
        elif self._failure is not None:
            reading = False
        else:
            reading = not self.inbox.full() and not self._peer_stopped_reading()
        if reading == self._reading:
            return
        self._reading = reading
        watcher = self._watcher
        if watcher is not None:
            if reading:
                watcher.start(self._on_readable)
            else:
                watcher.stop()
        elif reading and self._resume is not None:
            self._resume.set()

    def _peer_stopped_reading(self) -> bool:
        """A pong waits behind a writer that has got nothing out for a while."""
        return (
            self._reply_waiting
            and self._writer is not None
            and time.monotonic() - self._progress_at > _STALLED
        )

    def _arm_close_timer(self) -> None:
        if self._close_timer is None:
            self._close_timer = self._loop.timer(self._close_timeout)
            self._close_timer.start(self._close_timed_out)

    def _close_timed_out(self) -> None:
        log.info("dropping %s: the closing handshake took more than %.1fs", self._describe(), self._close_timeout)
        self.teardown()

    def _closed(self) -> bool:
        return self.phase is Phase.CLOSED

    def _lost(self) -> None:
        """A write failed: the TCP connection is gone."""
        self.teardown()

    def _describe(self) -> str:
        try:
            host = self._sock.getpeername()[0]
        except (OSError, IndexError, TypeError):
            host = "?"
        return f"connection from {host}"
