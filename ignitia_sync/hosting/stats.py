"""The counters of one host of connections (the server, a WSGI host): what ``stats()`` reports.

Example:
    >>> stats = ConnectionStats()
    >>> stats.refused(403)
    >>> stats.snapshot([])["refused"]
    {403: 1}
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["ConnectionStats", "on_closed"]

log = logging.getLogger("ignitia_sync.server")

#: Called once per closed connection with its route pattern and the seconds it was open (from
#: its 101 to its accounting): how ``ignitia_sync.metrics`` feeds its histogram. Empty unless
#: metrics are in use; a hook must not block. Example: ``on_closed.append(lambda route, seconds: None)``.
on_closed: list[Callable[[str, float], None]] = []


class _Counted(Protocol):
    """What is counted of a connection (a :class:`~ignitia_sync.connection.WebSocketConnection`)."""

    @property
    def messages_in(self) -> int: ...
    @property
    def messages_out(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def outbox_bytes(self) -> int: ...
    @property
    def close_code(self) -> int | None: ...
    @property
    def close_reason(self) -> str: ...
    @property
    def opened_at(self) -> float: ...


class ConnectionStats:
    """Connections served, messages and bytes of the closed ones, close codes, refusals.

    The live connections' own counters are added at :meth:`snapshot` time. In one hub a
    figure never counts a connection twice; under a threaded development server (each
    connection in its own thread) one that closes during the call may be counted twice
    or missed, once. Safe to update from several threads.
    """

    __slots__ = ("_close_codes", "_closed_by_route", "_lock", "_opened_by_route", "_refusals", "_totals")

    def __init__(self) -> None:
        self._totals: Counter[str] = Counter()
        self._close_codes: Counter[int] = Counter()
        self._refusals: Counter[int] = Counter()
        self._opened_by_route: Counter[str] = Counter()
        self._closed_by_route: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()

    def opened(self, route: str = "") -> None:
        """One more connection was accepted (after its 101), on the route with this pattern."""
        with self._lock:
            self._totals["connections"] += 1
            self._opened_by_route[route] += 1

    def closed(self, ws: _Counted, route: str = "") -> None:
        """Fold a closed connection's counters and close code (1006: none) into the totals.

        A 1008 "slow consumer" (its outbox went past ``outbox_limit``, or a blocking send
        past ``send_timeout``) is also counted in ``slow_consumers``.
        """
        code = ws.close_code or 1006
        with self._lock:
            self._totals.update(
                messages_in=ws.messages_in, messages_out=ws.messages_out, bytes_in=ws.bytes_in, bytes_out=ws.bytes_out
            )
            self._close_codes[code] += 1
            self._closed_by_route[route, code] += 1
            if code == 1008 and ws.close_reason == "slow consumer":
                self._totals["slow_consumers"] += 1
        if on_closed:
            seconds = time.monotonic() - ws.opened_at
            for hook in on_closed:
                try:
                    hook(route, seconds)
                except Exception:  # a metrics hook must not cost the access line or the accounting
                    log.exception("an on_closed hook failed")

    def by_route(self) -> dict[str, Any]:
        """Per route pattern: connections ``opened`` and ``closed`` (by close code) so far.

        Example:
            >>> stats = ConnectionStats()
            >>> stats.opened("/chat/:room")
            >>> stats.by_route()
            {'opened': {'/chat/:room': 1}, 'closed': {}}
        """
        with self._lock:
            return {"opened": dict(self._opened_by_route), "closed": dict(self._closed_by_route)}

    def refused(self, status: int) -> None:
        """An upgrade was refused with HTTP ``status`` before its 101."""
        with self._lock:
            self._refusals[status] += 1

    def snapshot(self, open_connections: Iterable[_Counted]) -> dict[str, Any]:
        """The figures now: totals plus what the ``open_connections`` have counted so far."""
        live = list(open_connections)
        with self._lock:
            totals, close_codes, refused = Counter(self._totals), dict(self._close_codes), dict(self._refusals)
        for ws in live:
            totals.update(
                messages_in=ws.messages_in, messages_out=ws.messages_out, bytes_in=ws.bytes_in, bytes_out=ws.bytes_out
            )
        return {
            "open_connections": len(live),
            "total_connections": totals["connections"],
            "messages_in": totals["messages_in"],
            "messages_out": totals["messages_out"],
            "bytes_in": totals["bytes_in"],
            "bytes_out": totals["bytes_out"],
            "close_codes": close_codes,
            "refused": refused,
            "outbox_bytes": sum(ws.outbox_bytes for ws in live),
            "slow_consumers": totals["slow_consumers"],
        }
