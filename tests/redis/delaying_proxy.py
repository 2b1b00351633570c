"""A TCP proxy on 127.0.0.1 in front of a real redis-server that makes subscriptions slow.

Every chunk a client sends that holds ``marker`` (``b"SUBSCRIBE"`` by default: redis-py sends
commands in capitals) reaches Redis ``delay`` seconds late; everything else is forwarded at once,
and each connection keeps its order. It is a slow link for one kind of command: a join that
returned before Redis confirmed its subscription would show as a lost message.

A ``tcp_proxy.CuttingProxy`` (real sockets, one OS thread per direction of each connection)
that slows one kind of chunk.

Example::

    proxy = DelayingProxy(redis_server.port, delay=0.02)
    backplane = RedisBackplane(proxy.url)
"""

from __future__ import annotations

import time

from tests.redis.tcp_proxy import CuttingProxy


class DelayingProxy(CuttingProxy):
    """Forwards 127.0.0.1:``port`` to ``target_port``, holding back what holds ``marker``; ``url`` is its redis:// URL."""

    def __init__(self, target_port: int, delay: float, marker: bytes = b"SUBSCRIBE") -> None:
        self.delay, self._slow_marker = delay, marker
        #: Chunks held back so far.
        self.delayed = 0
        super().__init__(target_port)

    def _before_upstream(self, data: bytes) -> None:
        if self._slow_marker in data:
            self.delayed += 1
            time.sleep(self.delay)  # the slow link itself; this connection's later chunks wait behind it
