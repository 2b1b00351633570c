"""A consumer that survives server restarts: reconnects with backoff, subscribes again, goes on.

Run: python examples/feed_consumer.py ws://127.0.0.1:8000/ticks
     (against `ignitia-sync tests.client_servers:router --port 8000`, which ticks every 0.1 s)

Each drop is followed by a random wait (0-0.5 s, then longer, up to 5 s here), a new
connection and a new subscription. Ctrl-C or SIGTERM stops it cleanly (close 1001).
"""

from __future__ import annotations

import logging
import signal
import sys

import gevent

from ignitia_sync import ConnectionClosed, Message
from ignitia_sync.client import Backoff, reconnecting


def main(url: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    feed = reconnecting(url, backoff=Backoff(first=0.5, factor=2.0, cap=5.0))
    for signum in (signal.SIGTERM, signal.SIGINT):  # run in the hub, between two of our steps
        gevent.signal_handler(signum, feed.stop)
    for ws in feed:
        print(f"connected (connection {feed.connections})", flush=True)
        try:
            ws.send_json({"subscribe": "ticks"})
            for message in ws:
                if isinstance(message, Message.Text):
                    print(message.data, flush=True)
        except ConnectionClosed:
            continue  # a send that raced the drop: the loop reconnects
    print("stopped", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
