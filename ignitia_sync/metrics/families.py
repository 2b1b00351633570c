"""The metric families, and how they are brought up to date from the hosts' own counters.

:func:`sync` reads every host of the process (``hosts()``): ``stats()``, ``routes_stats()``,
its registry's broadcast counters and its backplane's ``stats()``, plus the blocking watch's
totals, and moves prometheus_client's counters on by what they gained since the last call (per
host, so a host that goes away takes nothing with it) and sets the gauges. It runs at each
scrape; under prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) also every
:data:`SYNC_INTERVAL` seconds in each process that serves connections, so that a scrape of one
gunicorn worker sees the others' figures. The figures fed per event are the two histograms:
handler duration, one observation per closed connection (``hosting.stats.on_closed``), and
backplane latency, one per stamped message received (``broadcast.backplane.on_remote_latency``).

Example:
    >>> sync()
    >>> METRICS["ignitia_sync_connections_open"], METRICS["ignitia_sync_handler_duration_seconds"]
    ('gauge', 'histogram')
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import Counter as Tally
from typing import Any

import gevent
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.multiprocess import mark_process_dead

from ..broadcast.backplane import on_remote_latency
from ..hosting import stats as host_stats
from ..hosting.blocking import blocking_totals
from ..hosting.host import Host, hosts

__all__ = ["METRICS", "SYNC_INTERVAL", "keep_in_sync", "multiprocess", "sync"]

log = logging.getLogger("ignitia_sync.metrics")

#: Seconds between two syncs of a process under multiprocess mode (its figures are at most this old).
SYNC_INTERVAL = 1.0

_opened = Counter("ignitia_sync_connections_opened_total", "WebSocket connections opened (after the 101)", ["route"])
_closed = Counter(
    "ignitia_sync_connections_closed_total", "WebSocket connections closed, by close code (1006: none)",
    ["route", "code"],
)
_open = Gauge("ignitia_sync_connections_open", "WebSocket connections open now", ["route"], multiprocess_mode="livesum")
_refused = Counter("ignitia_sync_handshakes_refused_total", "Upgrades refused before the 101, by HTTP status", ["status"])
_messages_in = Counter("ignitia_sync_messages_received_total", "Data messages received from peers")
_messages_out = Counter("ignitia_sync_messages_sent_total", "Data messages sent to peers")
_bytes_in = Counter("ignitia_sync_received_bytes_total", "Bytes read from peers after the 101 (whole frames, headers included)")
_bytes_out = Counter("ignitia_sync_sent_bytes_total", "Bytes written to peers after the 101 (whole frames, headers included)")
_slow = Counter("ignitia_sync_slow_consumer_closes_total", "Connections closed with 1008 'slow consumer'")
_outbox = Gauge(
    "ignitia_sync_outbox_bytes", "Bytes queued to peers and not yet written, now", multiprocess_mode="livesum"
)
_duration = Histogram(
    "ignitia_sync_handler_duration_seconds", "Seconds from a connection's 101 until it was closed and accounted for",
    ["route"], buckets=(0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0, 86400.0),
)
_broadcasts = Counter(
    "ignitia_sync_broadcasts_total", "Broadcasts delivered in this process (made here or from the backplane)"
)
_deliveries = Counter("ignitia_sync_broadcast_deliveries_total", "Connections the broadcasts were queued to (fan-out)")
_blocked = Counter("ignitia_sync_hub_blocked_total", "Episodes in which a handler blocked the event loop past blocking_warning")
_blocked_seconds = Counter("ignitia_sync_hub_blocked_seconds_total", "Seconds the event loop was blocked in those episodes")
_backplane = {
    name: Counter(f"ignitia_sync_backplane_{name}_total", text, ["kind"])
    for name, text in (
        ("published", "Messages published to Redis"),
        ("received", "Messages received from Redis"),
        ("dropped", "Messages dropped (Redis unreachable, queue full, given up)"),
        ("rejected", "Envelopes received that were not ours (malformed), dropped"),
        ("reconnects", "Reconnections to Redis"),
    )
}
_latency = Histogram(
    "ignitia_sync_backplane_latency_seconds",
    "Seconds from publish in another process to delivery here (messages stamped with publish_times=True)",
    ["kind"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
_backplane_up = Gauge(
    "ignitia_sync_backplane_up", "1 while every process's link to Redis is up (Redis backplane only)", ["kind"],
    multiprocess_mode="livemin",
)
_backplane_pending = Gauge(
    "ignitia_sync_backplane_pending_bytes", "Bytes waiting to be published to Redis", ["kind"],
    multiprocess_mode="livesum",
)

#: Every family's name as scraped, with its type (the documentation lists each one).
METRICS: dict[str, str] = {
    "ignitia_sync_connections_opened_total": "counter",
    "ignitia_sync_connections_closed_total": "counter",
    "ignitia_sync_connections_open": "gauge",
    "ignitia_sync_handshakes_refused_total": "counter",
    "ignitia_sync_messages_received_total": "counter",
    "ignitia_sync_messages_sent_total": "counter",
    "ignitia_sync_received_bytes_total": "counter",
    "ignitia_sync_sent_bytes_total": "counter",
    "ignitia_sync_slow_consumer_closes_total": "counter",
    "ignitia_sync_outbox_bytes": "gauge",
    "ignitia_sync_handler_duration_seconds": "histogram",
    "ignitia_sync_broadcasts_total": "counter",
    "ignitia_sync_broadcast_deliveries_total": "counter",
    "ignitia_sync_hub_blocked_total": "counter",
    "ignitia_sync_hub_blocked_seconds_total": "counter",
    **{f"ignitia_sync_backplane_{name}_total": "counter" for name in _backplane},
    "ignitia_sync_backplane_latency_seconds": "histogram",
    "ignitia_sync_backplane_up": "gauge",
    "ignitia_sync_backplane_pending_bytes": "gauge",
}

_Key = tuple[str, ...]


class _State:
    """What the last sync saw, per host (and of the process-wide blocking totals), in this process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.seen: weakref.WeakKeyDictionary[Host, dict[_Key, float]] = weakref.WeakKeyDictionary()
        self.blocking: dict[_Key, float] = {}
        self.routes: set[str] = set()
        self.backplane = False  # the backplane gauges have a sample
        self.loop: gevent.Greenlet[Any, Any] | None = None


_state = _State()
_lock = threading.Lock()


def multiprocess() -> bool:
    """True under prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` is set).

    Example:
        >>> isinstance(multiprocess(), bool)
        True
    """
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"))


def code_label(code: int) -> str:
    """The ``code`` label of a close code: the protocol's own codes exactly, an application's by class.

    A peer chooses the code it closes with; 2,000 application codes per route would be as
    many time series, so 3000-4999 become ``"3xxx"`` and ``"4xxx"`` (the exact codes are in
    ``stats()["close_codes"]`` and the access log).

    Example:
        >>> code_label(1008), code_label(4001), code_label(3999), code_label(2000)
        ('1008', '4xxx', '3xxx', 'other')
    """
    if 1000 <= code <= 1015:
        return str(code)
    if 3000 <= code <= 4999:
        return f"{code // 1000}xxx"
    return "other"


def _counters_of(host: Host, stats: dict[str, Any], routes: dict[str, Any]) -> dict[_Key, float]:
    """The cumulative figures of one host, keyed by (what, label values...)."""
    figures: dict[_Key, float] = {}
    for route, count in routes["opened"].items():
        figures["opened", route] = count
    for (route, code), count in routes["closed"].items():
        key = ("closed", route, code_label(code))
        figures[key] = figures.get(key, 0) + count
    for status, count in stats["refused"].items():
        figures["refused", str(status)] = count
    for name in ("messages_in", "messages_out", "bytes_in", "bytes_out", "slow_consumers"):
        figures[(name,)] = stats[name]
    figures[("broadcasts",)] = host.registry.broadcasts
    figures[("deliveries",)] = host.registry.deliveries
    backplane = stats["backplane"]
    if backplane.get("kind") == "redis":
        for name in _backplane:
            figures["backplane", name] = backplane.get(name, 0)
    return figures


def _counter(key: _Key) -> Any:
    """The prometheus_client child counter a figure's key names."""
    what, labels = key[0], key[1:]
    if what == "opened":
        return _opened.labels(*labels)
    if what == "closed":
        return _closed.labels(*labels)
    if what == "refused":
        return _refused.labels(*labels)
    if what == "backplane":
        return _backplane[labels[0]].labels("redis")
    return {
        "messages_in": _messages_in, "messages_out": _messages_out, "bytes_in": _bytes_in, "bytes_out": _bytes_out,
        "slow_consumers": _slow, "broadcasts": _broadcasts, "deliveries": _deliveries,
        "blocked": _blocked, "blocked_seconds": _blocked_seconds,
    }[what]


def _advance(figures: dict[_Key, float], last: dict[_Key, float]) -> dict[_Key, float]:
    """Move each counter on by what its figure gained; the highest figures seen, for the next call.

    A figure may dip for a moment (a closing connection between the registry and the totals);
    it is not counted again when it comes back.
    """
    highest = dict(last)
    for key, value in figures.items():
        gained = value - last.get(key, 0)
        if gained > 0:
            _counter(key).inc(gained)
            highest[key] = value
    return highest


def sync() -> None:
    """Bring every family up to date with the hosts of this process (what a scrape calls first).

    Example:
        >>> sync()  # idempotent: the counters move only by what happened since
    """
    with _lock:
        state = _current()
        open_by_route: Tally[str] = Tally()
        outbox = pending = 0
        up: list[bool] = []
        for host in hosts():
            stats, routes = host.stats(), host.routes_stats()
            state.seen[host] = _advance(_counters_of(host, stats, routes), state.seen.get(host, {}))
            for route, count in routes["opened"].items():
                open_by_route[route] += count
            for (route, _code), count in routes["closed"].items():
                open_by_route[route] -= count
            outbox += stats["outbox_bytes"]
            backplane = stats["backplane"]
            if backplane.get("kind") == "redis" and not host.shutdown_event.is_set():  # a stopped host's link is closed on purpose
                up.append(bool(backplane.get("up")))
                pending += backplane.get("pending_bytes", 0)
        episodes, seconds = blocking_totals()
        blocking: dict[_Key, float] = {("blocked",): episodes, ("blocked_seconds",): seconds}
        state.blocking = _advance(blocking, state.blocking)
        for route in state.routes | set(open_by_route):
            _open.labels(route).set(max(open_by_route[route], 0))
        state.routes |= set(open_by_route)
        _outbox.set(outbox)
        if up:
            _backplane_up.labels("redis").set(1 if all(up) else 0)
            _backplane_pending.labels("redis").set(pending)
            state.backplane = True
        elif state.backplane:  # no Redis backplane any more: no stale "up"
            _backplane_up.remove("redis")
            _backplane_pending.remove("redis")
            state.backplane = False


def _observe(route: str, seconds: float) -> None:
    """One closed connection (``hosting.stats.on_closed``): the histogram, and the sync loop started."""
    _duration.labels(route).observe(seconds)
    if multiprocess():
        keep_in_sync()


def keep_in_sync() -> None:
    """Under multiprocess mode, sync this process every :data:`SYNC_INTERVAL` s (started once per process).

    Runs in the calling thread's hub (a gunicorn worker's); called by the first scrape, the
    first closed connection and :func:`~ignitia_sync.metrics.wsgi_app`.

    Example::

        keep_in_sync()
    """
    if not multiprocess():
        return
    with _lock:
        state = _current()
        if state.loop is None or state.loop.dead:
            state.loop = gevent.spawn(_sync_forever)


def _current() -> _State:
    """This process's state (under ``_lock``); a forked child starts afresh, as its hosts do."""
    global _state
    if _state.pid != os.getpid():
        _state = _State()
    return _state


def _sync_forever() -> None:
    while True:
        gevent.sleep(SYNC_INTERVAL)
        try:
            sync()
        except Exception:  # a figure that cannot be read now is read at the next interval
            log.exception("metrics: sync failed")


def _observe_latency(seconds: float) -> None:
    """One message from another process that carried its publish time (``on_remote_latency``)."""
    _latency.labels("redis").observe(seconds)


def _forget_this_process() -> None:
    """At exit under multiprocess mode: this process's live gauges leave the scrape (its counters stay).

    A process killed outright cannot do it: gunicorn's ``child_exit`` hook does it for them
    (see docs/monitoring.md).
    """
    if multiprocess():
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


host_stats.on_closed.append(_observe)
on_remote_latency.append(_observe_latency)
atexit.register(_forget_this_process)
