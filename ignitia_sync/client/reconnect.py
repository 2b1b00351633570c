"""Connect again and again: :func:`reconnecting`, its :class:`Reconnecting` loop, the :func:`retryable` rule.

Each connection that drops, or each attempt that fails with an error :func:`retryable`
accepts, is followed by a wait drawn from a :class:`~ignitia_sync._support.backoff.Backoff`
(never shorter than a 429's or 503's ``Retry-After``, up to the backoff's cap) and a new
:func:`~ignitia_sync.client.connection.connect`. :meth:`Reconnecting.stop` ends the
loop from any greenlet or thread.

Example:
    >>> from ignitia_sync import Router, Server
    >>> router = Router()
    >>> router.websocket("/echo", lambda ws: [ws.send(m) for m in ws])  # doctest: +ELLIPSIS
    <ignitia_sync.router.Router object at ...>
    >>> with Server(router, ("127.0.0.1", 0)) as server:
    ...     loop = reconnecting(f"ws://127.0.0.1:{server.address[1]}/echo")
    ...     for ws in loop:
    ...         ws.send_text("once")
    ...         print(ws.recv(timeout=5), loop.connections)
    ...         loop.stop()
    Text(data='once') 1
"""

from __future__ import annotations

import email.utils
import logging
import ssl as _ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Literal, TypeVar, cast, overload

import gevent.event

from .._support.backoff import Backoff
from .._support.logs import escape_for_log, safe_url
from ..broadcast.positions import Position
from ..connection.threads import HubRef
from ..exceptions import ConnectionClosed, HandshakeError, InvalidHandshake
from .connection import ClientConnection, connect
from .rooms import SUBPROTOCOL, Positions, RoomsConnection, open_rooms

__all__ = ["Reconnecting", "reconnecting", "retry_after", "retryable"]

log = logging.getLogger("ignitia_sync.client")

#: Refusals worth another attempt: too many requests, and the server's or a gateway's trouble.
_RETRY_STATUSES = frozenset((429, 500, 502, 503, 504))
#: Refusals whose ``Retry-After`` says how long to stay away (RFC 9110 section 10.2.3).
_RETRY_AFTER_STATUSES = frozenset((429, 503))

#: What the loop yields: a ClientConnection, or a RoomsConnection with ``rooms=True``.
C = TypeVar("C")


def retry_after(exc: BaseException, now: float | None = None) -> float | None:
    """The seconds a 429 or 503 refusal asked the client to wait (``Retry-After``), else None.

    Both forms of the header are read: delay-seconds and an HTTP date (``now`` is the
    current time as ``time.time()``; a date in the past asks for no wait). A malformed
    value is ignored: the backoff decides alone.

    Example:
        >>> retry_after(HandshakeError(429, "slow down", (("retry-after", "30"),)))
        30.0
        >>> retry_after(HandshakeError(503, "busy", (("retry-after", "Thu, 01 Jan 1970 00:01:40 GMT"),)), now=40.0)
        60.0
        >>> retry_after(HandshakeError(404, "no", (("retry-after", "30"),))) is None
        True
        >>> retry_after(HandshakeError(503, "busy", (("retry-after", "\xb2"),))) is None  # not a number
        True
    """
    if not isinstance(exc, HandshakeError) or exc.status not in _RETRY_AFTER_STATUSES:
        return None
    value = next((v.strip() for k, v in exc.headers if k.lower() == "retry-after"), None)
    if not value:
        return None
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit, not to float()
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retryable(exc: BaseException) -> bool:
    """The default retry rule: network errors, timeouts, a broken answer, 429 and 5xx.

    Other refusals (403, 404, a 4xx in general) are the application's answer: retrying
    would not change it, so :func:`reconnecting` raises them; so are a bad certificate and
    a redirect we refuse to follow (``InvalidHandshake.retryable`` is False).

    Example:
        >>> retryable(HandshakeError(503, "busy")), retryable(HandshakeError(403, "no"))
        (True, False)
    """
    if isinstance(exc, HandshakeError):
        return exc.status in _RETRY_STATUSES
    if isinstance(exc, InvalidHandshake):
        return exc.retryable
    if isinstance(exc, _ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, (OSError, TimeoutError, ConnectionClosed))


class Reconnecting(Generic[C]):
    """The iterator :func:`reconnecting` returns: a fresh connection each time the last one drops.

    :meth:`stop` (from any greenlet or thread) ends the iteration: a wait in progress ends
    at once and the current connection is closed with 1001.

    Attributes:
        attempts: connection attempts made so far.
        connections: connections opened so far.
        last_error: the last error an attempt failed with (None before any).
        last_delay: the last wait, in seconds.
        positions: (``rooms=True``) room → the last position the application received, a
            snapshot; empty for a plain loop.
    """

    def __init__(
        self,
        url: str,
        backoff: Backoff,
        retry_on: Callable[[BaseException], bool],
        options: dict[str, Any],
        rooms: Positions | None = None,
    ) -> None:
        self.url = url
        self._rooms = rooms  # the positions of a rooms loop, across its connections
        self._backoff = backoff
        self._retry_on = retry_on
        self._options = options
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # stop() against the loop handing out a new connection
        self._wake: gevent.event.Event | None = None
        self._hub: HubRef | None = None  # the hub of the thread iterating, once it started
        self._current: ClientConnection | None = None
        self.attempts = 0
        self.connections = 0
        self.last_error: BaseException | None = None
        self.last_delay = 0.0

    def __iter__(self) -> Iterator[C]:
        self._hub = HubRef()
        self._wake = gevent.event.Event()
        failures = 0  # attempts in a row that failed, or connections that did not last
        asked: float | None = None  # the last refusal's Retry-After
        try:
            while not self._stopped.is_set():
                if failures:
                    delay = self._backoff.delay(failures - 1)
                    if asked is not None:  # the server said when: not before, but never past the cap
                        delay = max(delay, min(asked, self._backoff.cap))
                    self.last_delay = delay
                    log.info("reconnecting to %s in %.2fs (retry %d)", safe_url(self.url), delay, failures)
                    if self._wake.wait(delay):
                        break
                self.attempts += 1
                try:
                    ws = connect(self.url, **self._options)
                    try:
                        item = self._speak(ws)
                    except BaseException:
                        ws.close_and_wait(1000)
                        raise
                except Exception as exc:
                    self.last_error = exc
                    if not self._retry_on(exc):
                        raise
                    asked = retry_after(exc)
                    log.warning("could not connect to %s: %s", safe_url(self.url), _reason_of(exc))
                    failures += 1
                    continue
                with self._lock:
                    stopped = self._stopped.is_set()  # stop() came while connect() ran
                    if not stopped:
                        self._current = ws
                if stopped:
                    ws.close_and_wait(1001)
                    break
                self.connections += 1
                asked = None
                opened = time.monotonic()
                try:
                    yield item
                finally:
                    self._current = None
                    ws.close_and_wait(1001 if self._stopped.is_set() else 1000)
                stable = time.monotonic() - opened >= self._backoff.reset_after
                failures = 1 if stable else failures + 1
        finally:
            self._wake = None

    def _speak(self, ws: ClientConnection) -> C:
        """What the loop body gets: ``ws`` itself, or (rooms) ``ws`` after the hello, wrapped."""
        if self._rooms is None:
            return cast(C, ws)
        return cast(C, open_rooms(ws, self._rooms, self.url))

    @property
    def positions(self) -> dict[str, Position]:
        """(``rooms=True``) room → the last position the application received; save
        ``{room: p.as_json() ...}`` and pass it as ``positions=`` to resume after a restart."""
        return {} if self._rooms is None else self._rooms.snapshot()

    def stop(self) -> None:
        """End the iteration from any greenlet or thread; idempotent.

        A connection being opened meanwhile is closed (1001) as soon as it is open.
        """
        with self._lock:
            self._stopped.set()
            wake, current, hub = self._wake, self._current, self._hub
        if hub is None:
            return
        if current is not None:
            current._transport.run_in_own_thread(current._transport.close, 1001, "")
        if wake is not None:
            if hub.owns():
                wake.set()
            else:
                hub.call_soon(wake.set)


def _reason_of(exc: BaseException) -> str:
    """A failed attempt, short and safe for a log line: ``HTTP 503``, or the error's type and text."""
    if isinstance(exc, HandshakeError):
        return f"HTTP {exc.status}"
    return escape_for_log(f"{type(exc).__name__}: {exc}")[:200]


@overload
def reconnecting(
    url: str,
    *,
    rooms: Literal[False] = False,
    backoff: Backoff | None = None,
    retry_on: Callable[[BaseException], bool] = retryable,
    **options: Any,
) -> Reconnecting[ClientConnection]: ...


@overload
def reconnecting(
    url: str,
    *,
    rooms: Literal[True],
    positions: Positions | Mapping[str, Position | Mapping[str, Any]] | None = None,
    backoff: Backoff | None = None,
    retry_on: Callable[[BaseException], bool] = retryable,
    **options: Any,
) -> Reconnecting[RoomsConnection]: ...


def reconnecting(
    url: str,
    *,
    rooms: bool = False,
    positions: Positions | Mapping[str, Position | Mapping[str, Any]] | None = None,
    backoff: Backoff | None = None,
    retry_on: Callable[[BaseException], bool] = retryable,
    **options: Any,
) -> Reconnecting[Any]:
    """Connect to ``url`` again and again: ``for ws in reconnecting(url): ...``.

    Each connection that drops (or each attempt that fails with a retryable error) is
    followed by a wait from ``backoff`` and a new attempt; the loop body gets the new
    connection. A 429 or 503 refusal's ``Retry-After`` is honoured: the wait is at least
    what the server asked for, but never longer than ``backoff.cap``. A connection that stayed open ``backoff.reset_after`` seconds starts the
    waits from the shortest again. An error ``retry_on`` rejects (by default a 4xx other
    than 429, or a bad certificate) is raised from the loop.

    With ``rooms=True`` the loop speaks the rooms wire format (``ignitia.rooms.v1``) and
    resumes each room from the last position the application received: every attempt
    offers the subprotocol, each new connection sends the hello with the positions held
    before it is handed out, and the body gets a
    :class:`~ignitia_sync.client.rooms.RoomsConnection` whose ``recv()`` returns events
    (``Joined``, ``RoomMessage``, ``Gap``, ``Left``, or a direct ``Text``/``Binary``) and
    whose ``send*`` wrap in the envelope. A server that does not accept the subprotocol
    raises :class:`~ignitia_sync.exceptions.InvalidHandshake` (not retried).

    Args:
        url: as :func:`connect`.
        rooms: speak the rooms wire format and resume rooms (see above).
        positions: (``rooms=True``) where to resume from at the first connection: room →
            ``Position`` or its JSON form, as a previous loop's :attr:`Reconnecting.positions`.
        backoff: the waits (default :class:`Backoff`: 0-5 s, then x1.618 up to 60 s).
        retry_on: ``exc -> bool``: whether a failed attempt is retried (see :func:`retryable`).
        **options: every keyword argument of :func:`connect`.

    Example::

        def consume(url: str) -> None:
            for ws in reconnecting(url, headers={"Authorization": "Bearer t0k3n"}):
                ws.send_json({"subscribe": "prices"})  # again after each reconnect
                try:
                    for message in ws:
                        print(message)
                except ConnectionClosed:
                    continue  # a send that raced the drop: reconnect
    """
    if not rooms:
        if positions is not None:
            raise TypeError("positions= resumes rooms: pass rooms=True too")
        return Reconnecting(url, backoff or Backoff(), retry_on, options)
    if "subprotocols" in options:
        raise TypeError(f"rooms=True offers its subprotocol ({SUBPROTOCOL}) itself: no subprotocols=")
    store = positions if isinstance(positions, Positions) else Positions(positions)
    return Reconnecting(url, backoff or Backoff(), retry_on, {**options, "subprotocols": [SUBPROTOCOL]}, store)
