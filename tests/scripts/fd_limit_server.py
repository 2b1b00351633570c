"""An echo server that may open only a few file descriptors: run by the EMFILE test.

    python tests/scripts/fd_limit_server.py PORT
"""

from __future__ import annotations

import logging
import resource
import sys

from ignitia_sync import Message, Router, Server


def echo(ws):
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
    server = Server(Router().websocket("/echo", echo), ("127.0.0.1", int(sys.argv[1])), handshake_timeout=60)
    server.start()
    resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
    print("serving", flush=True)
    server.ignitia()
