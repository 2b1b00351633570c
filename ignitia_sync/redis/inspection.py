"""Inspection across processes over Redis: every process's connections and rooms, and closing one connection.

The asking side, :func:`gather` (``RedisBackplane.inspect``, ``Emitter.inspect``), publishes
an ``I`` envelope on ``PREFIX:all`` that carries a fresh reply key, ``{PREFIX}:inspect:TOKEN``.
PUBLISH answers how many subscribers got it: every live process (for SPUBLISH, those of the
``all`` channel's shard), the number of answers to expect. Each process's :class:`Answerer`
pushes one JSON document to the key (RPUSH and PEXPIRE in one script, so the key expires
soon after the asker stopped waiting); the asker BLPOPs until it has them all or its
``timeout`` has passed, then deletes the key. What it cannot know is *which* processes did not
answer (a stopped one, one older than ``I``, which rejects and counts it, or any other
subscriber of the channel): it says how many (``answered`` of ``expected``, ``partial``).

The answering side never runs in the backplane's listener (it owns the subscription
connections) nor in its publisher (it owns the publishing connection): the listener hands
each request to :meth:`Answerer.inspect` or :meth:`Answerer.close`, which never block, and
one worker greenlet of the backplane's hub, with a Redis connection of its own for as long
as it has work, answers them one at a time. At most :data:`_WAITING` inspections wait (more
are refused, counted in ``inspections_refused``), and a token bucket lets :data:`_BURST` run
in a row, then one per second: a flood of requests costs a serving process little. An answer
holds at most ``max_connections`` connection records (oldest first) and rooms (the largest
first), within :data:`_MAX_ANSWER_BYTES`; it then says ``"truncated": true`` and the totals.
Answers hold the records of ``Host.inspect_connections()``: route patterns, peers, rooms,
user ids and counters, never a token, a header or a message.

Example:
    >>> class Record:  # a Host's records are ConnectionInfo
    ...     def as_json(self):
    ...         return {"id": "#1", "route": "/chat", "rooms": ["lobby"]}
    >>> answer = json.loads(answer_document(b"0" * 16, [Record()], max_connections=10))
    >>> answer["rooms"], answer["truncated"], answer["connections"][0]["id"]
    ({'lobby': 1}, False, '#1')
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import gevent

from .._support.logs import LogThrottle, escape_for_log
from .envelope import _ANSWER, _Names, encode_inspect

__all__ = ["Answerer", "Inspectable", "answer_document", "gather"]

log = logging.getLogger("ignitia_sync.redis")

#: Inspections waiting for the worker; more are refused (counted).
_WAITING = 4
#: Closes of one connection waiting for the worker; more are refused (counted).
_WAITING_CLOSES = 256
#: Inspections answered in a row before the bucket runs dry; then one per :data:`_REFILL` seconds.
_BURST = 5
_REFILL = 1.0
#: The largest answer (bytes of JSON): half for connection records, half for rooms.
_MAX_ANSWER_BYTES = 4 << 20
#: The longest an asker may wait for answers (seconds).
MAX_TIMEOUT = 60.0


class _Record(Protocol):
    """A connection's record (:class:`~ignitia_sync.hosting.inspection.ConnectionInfo`)."""

    def as_json(self) -> dict[str, Any]: ...


class Inspectable(Protocol):
    """What a process answers for: a host (``Host`` registers itself with its backplane)."""

    def inspect_connections(self) -> Iterable[_Record]: ...

    def close_connection(self, id: str, code: int, reason: str) -> bool: ...


def answer_document(uid: bytes, records: Iterable[_Record], *, max_connections: int,
                    max_bytes: int = _MAX_ANSWER_BYTES) -> bytes:
    """This process's answer to an inspection: uid, pid, host name, connections, rooms (members each).

    Rooms are counted over every connection; the lists are cut at ``max_connections`` entries
    and ``max_bytes / 2`` bytes each, and then ``"truncated"`` is true.

    Example:
        >>> json.loads(answer_document(b"0" * 16, [], max_connections=1))["connections_total"]
        0
    """
    connections: list[str] = []
    rooms: collections.Counter[str] = collections.Counter()
    total = 0
    budget = max_bytes // 2
    for record in records:
        total += 1
        data = record.as_json()
        rooms.update(data.get("rooms", ()))
        if len(connections) < max_connections:
            encoded = json.dumps(data, separators=(",", ":"))
            if len(encoded) < budget:
                budget -= len(encoded) + 1
                connections.append(encoded)
    counted: list[str] = []
    budget = max_bytes // 2
    for name, members in sorted(rooms.items(), key=lambda item: (-item[1], item[0]))[:max_connections]:
        encoded = f"{json.dumps(name)}:{members}"
        if len(encoded) >= budget:
            break
        budget -= len(encoded) + 1
        counted.append(encoded)
    head = json.dumps({
        "uid": uid.decode(), "pid": os.getpid(), "host": socket.gethostname(), "connections_total": total,
        "rooms_total": len(rooms), "truncated": len(connections) < total or len(counted) < len(rooms),
    }, separators=(",", ":"))
    return f'{head[:-1]},"connections":[{",".join(connections)}],"rooms":{{{",".join(counted)}}}}}'.encode()


class Answerer:
    """Answers a backplane's inspections and closes, in one worker greenlet of its hub, one at a time.

    Args:
        connect: makes the worker's Redis client (closed when the worker runs out of work).
        counters: where to count (the backplane's ``counters``).
        max_connections: records (and rooms) per answer at most.
    """

    def __init__(self, connect: Callable[[], Any], counters: collections.Counter[str], *, max_connections: int) -> None:
        self._connect = connect
        self.counters = counters
        self.max_connections = max_connections
        #: The process id the answers carry (the backplane's; set again when it attaches).
        self.uid = b""
        self._inspected: weakref.WeakSet[Any] = weakref.WeakSet()
        self._inspections: collections.deque[tuple[bytes, int]] = collections.deque()
        self._closes: collections.deque[tuple[str, int, str]] = collections.deque()
        self._tokens = float(_BURST)
        self._refilled = time.monotonic()
        self._worker: gevent.Greenlet[Any, Any] | None = None
        self._warn = LogThrottle(log, burst=5, interval=10.0, level=logging.WARNING)

    def add(self, inspected: Inspectable) -> None:
        """Answer for ``inspected`` too (held weakly: a host that is gone is left out)."""
        self._inspected.add(inspected)

    def inspect(self, reply_key: bytes, ttl_ms: int) -> None:
        """Queue an answer to ``reply_key`` (from the listener: never blocks); refused when too many came."""
        now = time.monotonic()
        self._tokens = min(float(_BURST), self._tokens + (now - self._refilled) / _REFILL)
        self._refilled = now
        if len(self._inspections) >= _WAITING or self._tokens < 1:
            self.counters["inspections_refused"] += 1
            self._warn.log("backplane: an inspection refused: too many at once (%d refused so far)",
                           self.counters["inspections_refused"])
            return
        self._tokens -= 1
        self._inspections.append((reply_key, ttl_ms))
        self._start()

    def close(self, id: str, code: int, reason: str) -> None:
        """Queue the close of this process's connection ``id`` (from the listener: never blocks)."""
        if len(self._closes) >= _WAITING_CLOSES:
            self.counters["inspection_closes_refused"] += 1
            self._warn.log("backplane: a close of %s refused: too many at once", escape_for_log(id))
            return
        self._closes.append((id, code, reason))
        self._start()

    def _start(self) -> None:
        if self._worker is None or self._worker.dead:
            self._worker = gevent.spawn(self._run)

    def _run(self) -> None:
        client: Any = None
        try:
            while self._closes or self._inspections:
                if self._closes:
                    id, code, reason = self._closes.popleft()
                    closed = any(target.close_connection(id, code, reason) for target in list(self._inspected))
                    self.counters["inspection_closes" if closed else "inspection_closes_missed"] += 1
                    continue
                reply_key, ttl_ms = self._inspections.popleft()
                try:
                    records = [record for target in list(self._inspected) for record in target.inspect_connections()]
                    document = answer_document(self.uid, records, max_connections=self.max_connections)
                    if client is None:
                        client = self._connect()
                    client.eval(_ANSWER, 1, reply_key, document, ttl_ms)
                    self.counters["inspections_answered"] += 1
                except Exception as exc:  # Redis failed (or a host did): this answer is lost, counted
                    self.counters["inspections_failed"] += 1
                    self._warn.log("backplane: an inspection was not answered (%s)", escape_for_log(str(exc)))
                    if client is not None:
                        client.close()
                    client = None
                gevent.sleep(0)  # the hub serves between two answers
        finally:
            if client is not None:
                client.close()


def gather(client: Any, publish: Callable[[bytes, bytes], Any], names: _Names, sender: bytes, timeout: float,
           *, slice: float | None = None) -> dict[str, Any]:
    """Ask every process for its connections and rooms; wait at most ``timeout`` seconds for the answers.

    ``client`` is a redis-py client, ``publish`` its ``publish`` (``spublish`` in sharded mode);
    ``slice`` bounds each BLPOP (under the client's ``socket_timeout``).

    Returns:
        ``{"processes": [...], "answered": n, "expected": m, "partial": n < m}``; each
        process: ``uid``, ``pid``, ``host``, ``connections``, ``rooms`` (name: members),
        ``connections_total``, ``rooms_total``, ``truncated``.

    Raises:
        ValueError: a ``timeout`` not in (0, 60].
        redis.RedisError: Redis could not be reached or did not answer.
    """
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"an inspection waits 0-{MAX_TIMEOUT:g} s, not {timeout!r}")
    reply_key = names.reply_prefix + os.urandom(16).hex().encode()
    envelope = encode_inspect(sender, reply_key, int(timeout * 1000) + 5000)
    deadline = time.monotonic() + timeout
    expected = int(publish(names.all, envelope))
    processes: list[dict[str, Any]] = []
    try:
        while len(processes) < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # BLPOP's timeout 0 would wait forever: never less than a millisecond
            popped = client.blpop([reply_key], timeout=max(0.001, min(left, slice or left)))
            if popped is not None:
                answer = _parsed(popped[1])
                if answer is not None:
                    processes.append(answer)
    finally:
        client.delete(reply_key)
    processes.sort(key=lambda answer: (answer["host"], answer["pid"], answer["uid"]))
    return {"processes": processes, "answered": len(processes), "expected": expected,
            "partial": len(processes) < expected}


def _parsed(data: bytes) -> dict[str, Any] | None:
    """An answer, or None for one that is not (left out: it counts as not answered).

    Example:
        >>> _parsed(b"[]") is None, _parsed(b"not json") is None
        (True, True)
    """
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    types = {"uid": str, "pid": int, "host": str, "connections": list, "rooms": dict}
    if any(not isinstance(answer.get(key), kind) for key, kind in types.items()):
        return None
    return answer
