"""Keepalive and idle timers of one connection: hub timers, no greenlet, never blocking.

Every ``ping_interval`` a ping with a fresh payload enters the outbound stream ahead of
queued data; when its pong does not come within ``ping_timeout`` the peer is gone and the
connection is failed with 1011 (no closing handshake). With ``idle_timeout``, a connection
that received no data message for that long is closed with 1001 "idle timeout"; pings and
pongs do not count as activity.

Example:
    >>> "latency" in Keepalive.__slots__
    True
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

from ..message import Ping
from ..sansio.protocol import ProtocolState

if TYPE_CHECKING:
    from .transport import Transport

__all__ = ["Keepalive"]

log = logging.getLogger("ignitia_sync.connection")
_payloads = itertools.count(1)


class Keepalive:
    """Pings a peer and measures its latency; fails it when a pong is late; closes idle ones.

    Args:
        transport: the connection's transport.
        ping_interval: seconds between pings (None: no pings).
        ping_timeout: seconds a ping may wait for its pong (default: ``ping_interval``).
        idle_timeout: seconds without a data message before closing with 1001 (None: never).
    """

    __slots__ = ("_idle_timeout", "_idle_timer", "_ping_interval", "_ping_timeout", "_ping_timer", "_pong_timer",
                 "_sent_at", "_transport", "_waiting_for", "latency")

    def __init__(
        self,
        transport: Transport,
        ping_interval: float | None,
        ping_timeout: float | None,
        idle_timeout: float | None,
    ) -> None:
        self._transport = transport
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout or ping_interval or 20.0
        self._idle_timeout = idle_timeout
        self._ping_timer: Any = None
        self._idle_timer: Any = None
        self._pong_timer: Any = None
        self._waiting_for: bytes | None = None
        self._sent_at = 0.0
        #: Seconds the last ping took to be answered; None before the first answer.
        self.latency: float | None = None

    def start(self, loop: Any) -> None:
        """Start the timers in ``loop`` (the transport does this when it starts)."""
        if self._ping_interval:
            self._ping_timer = loop.timer(self._ping_interval, self._ping_interval)
            self._ping_timer.start(self._ping)
        if self._idle_timeout:
            period = self._idle_timeout / 4
            self._idle_timer = loop.timer(period, period)
            self._idle_timer.start(self._check_idle)

    def stop(self) -> None:
        """Close every timer (idempotent)."""
        for timer in (self._ping_timer, self._idle_timer, self._pong_timer):
            if timer is not None:
                timer.close()
        self._ping_timer = self._idle_timer = self._pong_timer = None

    def on_pong(self, payload: bytes) -> None:
        """A pong arrived: if it answers our ping, record the latency and stop its timer."""
        if payload != self._waiting_for:
            return
        self.latency = time.monotonic() - self._sent_at
        self._waiting_for = None
        if self._pong_timer is not None:
            self._pong_timer.close()
            self._pong_timer = None

    def _ping(self) -> None:
        transport = self._transport
        if self._waiting_for is not None or transport.proto.state is not ProtocolState.OPEN:
            return
        payload = next(_payloads).to_bytes(8, "big")
        self._waiting_for = payload
        self._sent_at = time.monotonic()
        transport.send_ping(transport.proto.send(Ping(payload)))
        self._pong_timer = transport._loop.timer(self._ping_timeout)
        self._pong_timer.start(self._timed_out)

    def _timed_out(self) -> None:
        self._pong_timer = None
        # A program that spent the whole timeout in a blocking call outside the hub (a
        # client in a script that does not monkey-patch) may have the pong unread in the
        # socket: the read due in this same loop turn runs before this callback does.
        self._transport._loop.run_callback(self._confirm_timeout)

    def _confirm_timeout(self) -> None:
        if self._waiting_for is not None and self._transport.proto.state is not ProtocolState.CLOSED:
            self._transport.fail(1011, "keepalive ping timeout")

    def _check_idle(self) -> None:
        transport = self._transport
        if transport.proto.state is not ProtocolState.OPEN:
            return
        if time.monotonic() - transport.last_data_at >= (self._idle_timeout or 0):
            log.info("closing %s: no data message for %.1fs", transport._describe(), self._idle_timeout)
            transport.close(1001, "idle timeout")
