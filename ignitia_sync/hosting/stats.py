"""The counters of one host of connections (the server, a WSGI host): what ``stats()`` reports.

Example:
    >>> stats = ConnectionStats()
    >>> stats.refused(403)
    >>> stats.snapshot([])["refused"]
    {403: 1}
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["ConnectionStats"]


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


class ConnectionStats:
    """Connections served, messages and bytes of the closed ones, close codes, refusals.

    The live connections' own counters are added at :meth:`snapshot` time. In one hub a
    figure never counts a connection twice; under a threaded development server (each
    connection in its own thread) one that closes during the call may be counted twice
    or missed, once. Safe to update from several threads.
    """

    __slots__ = ("_close_codes", "_lock", "_refusals", "_totals")

    def __init__(self) -> None:
        self._totals: Counter[str] = Counter()
        self._close_codes: Counter[int] = Counter()
        self._refusals: Counter[int] = Counter()
        self._lock = threading.Lock()

    def opened(self) -> None:
        """One more connection was accepted (after its 101)."""
        with self._lock:
            self._totals["connections"] += 1

    def closed(self, ws: _Counted) -> None:
        """Fold a closed connection's counters and close code (1006: none) into the totals."""
        with self._lock:
            self._totals.update(
                messages_in=ws.messages_in, messages_out=ws.messages_out, bytes_in=ws.bytes_in, bytes_out=ws.bytes_out
            )
            self._close_codes[ws.close_code or 1006] += 1

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
        }
