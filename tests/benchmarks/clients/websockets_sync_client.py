"""C1 client: websockets' threading client (``websockets.sync.client.connect``), one thread per connection.

Compression off (``compression=None``); otherwise websockets' defaults (its C
``speedups`` masking is used when installed, as it is in the benchmark environment).
"""

from __future__ import annotations

import _common
from websockets.sync.client import connect


def main() -> None:
    opts = _common.options()
    stats = [_common.Stats() for _ in range(opts.conns)]
    _common.measure_threads(
        opts, stats, lambda: connect(opts.url, compression=None),
        lambda ws, s: _common.pump(ws.send, ws.recv, opts.payload, opts.inflight, s),
    )


if __name__ == "__main__":
    main()
