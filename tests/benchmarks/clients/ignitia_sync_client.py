"""C1 client: ignitia_sync's blocking client, every connection a greenlet in one thread.

Not monkey-patched: the client's sockets are gevent sockets, so plain ``gevent.spawn`` and
``gevent.sleep`` are all it takes. ``--threads``: one OS thread per connection instead,
each with its own gevent hub (the ``ignitia_sync-threads`` variant).
"""

from __future__ import annotations

import sys

import _common
import gevent

from ignitia_sync.client import ClientConnection, connect


def pump(ws: ClientConnection, opts: _common.Options, stats: _common.Stats) -> None:
    send = ws.send_bytes if opts.binary else ws.send_text
    _common.pump(send, ws.recv, opts.payload, opts.inflight, stats)  # type: ignore[arg-type]


def greenlets(opts: _common.Options, stats: list[_common.Stats]) -> None:
    connections = [connect(opts.url, compression=None) for _ in stats]
    for ws, s in zip(connections, stats, strict=True):
        gevent.spawn(pump, ws, opts, s)
    _common.measure(opts, stats, gevent.sleep, greenlets=len(stats))


def threads(opts: _common.Options, stats: list[_common.Stats]) -> None:
    _common.measure_threads(opts, stats, lambda: connect(opts.url, compression=None), lambda ws, s: pump(ws, opts, s))


if __name__ == "__main__":
    threaded = "--threads" in sys.argv
    if threaded:
        sys.argv.remove("--threads")
    options = _common.options()
    (threads if threaded else greenlets)(options, [_common.Stats() for _ in range(options.conns)])
