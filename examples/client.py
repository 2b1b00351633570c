"""An echo client: sends each argument, prints what comes back.

Run: python examples/client.py ws://127.0.0.1:8000/echo hello world
     (against, for example, `python examples/echo.py --port 8000`)

A plain script: nothing is monkey-patched; the connection runs in this thread's gevent hub.
"""

from __future__ import annotations

import sys

from ignitia_sync.client import connect


def main(url: str, words: list[str]) -> None:
    with connect(url, open_timeout=5) as ws:  # closes with 1000 on the way out
        for word in words:
            ws.send_text(word)
            print(ws.recv(timeout=5))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["hello"])
