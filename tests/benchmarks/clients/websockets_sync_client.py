"""C1 client: websockets' threading client (``websockets.sync.client.connect``), one thread per connection.

Compression off (``compression=None``); otherwise websockets' defaults (its C
``speedups`` masking is used when installed, as it is in the benchmark environment).
"""

from __future__ import annotations

import threading
import time

import _common
from websockets.sync.client import connect


def main() -> None:
    opts = _common.options()
    stats = [_common.Stats() for _ in range(opts.conns)]
    opened = threading.Semaphore(0)
    go = threading.Event()

    def client(s: _common.Stats) -> None:
        ws = connect(opts.url, compression=None)
        opened.release()
        go.wait()
        _common.pump(ws.send, ws.recv, opts.payload, opts.inflight, s)

    for s in stats:
        threading.Thread(target=client, args=(s,), daemon=True).start()
    for _ in stats:
        if not opened.acquire(timeout=30):
            raise SystemExit("a connection did not open within 30 s")
    go.set()
    _common.measure(opts, stats, time.sleep, threads=len(stats))


if __name__ == "__main__":
    main()
