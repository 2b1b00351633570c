"""C1 client: websocket-client (``websocket.create_connection``), one thread per connection.

websocket-client has no compression. Defaults, except that ``--skip-utf8`` passes
``skip_utf8_validation=True``, which its README recommends for performance (the
``websocket-client-skip-utf8`` peer; it then does not check that text is UTF-8, which the
others do). ``wsaccel``, its other suggested speed-up, is not installed (unmaintained; its
README credits it with about 10 % on masking and 2x on the UTF-8 check that --skip-utf8
drops altogether).
"""

from __future__ import annotations

import sys

import _common
import websocket


def main() -> None:
    skip_utf8 = "--skip-utf8" in sys.argv
    if skip_utf8:
        sys.argv.remove("--skip-utf8")
    opts = _common.options()
    stats = [_common.Stats() for _ in range(opts.conns)]
    def pump(ws: websocket.WebSocket, s: _common.Stats) -> None:
        send = ws.send_binary if opts.binary else ws.send
        _common.pump(send, ws.recv, opts.payload, opts.inflight, s)

    _common.measure_threads(
        opts, stats, lambda: websocket.create_connection(opts.url, skip_utf8_validation=skip_utf8), pump,
        skip_utf8_validation=skip_utf8,
    )


if __name__ == "__main__":
    main()
