"""The one thing the chat keeps outside the library: the dashboard's statistics of every worker.

History, replay, presence and who is in which room are the library's (``HostSettings.history``,
``presence=True``, the Redis backplane); this module only sums each worker's counters
(``sock.stats()``) for ``/stats``. Two stores with one interface:

* :class:`LocalStats` (no ``CHAT_REDIS_URL``): this process's last snapshot.
* :class:`RedisStats` (``CHAT_REDIS_URL`` set): one hash field per worker, dropped from the sums
  once it is older than ``STATS_TTL`` (a worker that stopped).
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

STATS_TTL = 5.0  # seconds a worker's statistics count without a fresh snapshot


class Stats(Protocol):
    """Where each worker's snapshot goes, and where the dashboard reads them all."""

    def publish(self, worker: str, snapshot: dict[str, Any]) -> None: ...
    def cluster_stats(self) -> list[dict[str, Any]]: ...


class LocalStats:
    """This process's snapshot only."""

    def __init__(self) -> None:
        self._stats: dict[str, dict[str, Any]] = {}

    def publish(self, worker: str, snapshot: dict[str, Any]) -> None:
        self._stats = {worker: snapshot}

    def cluster_stats(self) -> list[dict[str, Any]]:
        return list(self._stats.values())


class RedisStats:
    """Every worker's snapshot in one Redis hash.

    Redis calls block the calling greenlet only: the app runs monkey-patched (``ignitia-sync``
    and gunicorn's gevent workers patch before importing it), so redis-py's sockets are gevent's.
    """

    def __init__(self, url: str, key: str = "chat:stats") -> None:
        import redis  # only needed with CHAT_REDIS_URL

        self._redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
        self._key = key

    def publish(self, worker: str, snapshot: dict[str, Any]) -> None:
        self._redis.hset(self._key, worker, json.dumps(snapshot))

    def cluster_stats(self) -> list[dict[str, Any]]:
        now = time.time()
        fresh: list[dict[str, Any]] = []
        stale: list[str] = []
        for worker, raw in self._redis.hgetall(self._key).items():
            snapshot = json.loads(raw)
            if now - snapshot["ts"] < STATS_TTL:
                fresh.append(snapshot)
            else:  # a stopped worker: it leaves the sums (each snapshot carries its own rates)
                stale.append(str(worker))
        if stale:
            self._redis.hdel(self._key, *stale)
        return fresh
