"""A server for the connection-storm tests: every upgrade to ``/ws`` is held open until the peer goes.

    python tests/scripts/storm_server.py PORT [SETTING=VALUE ...]

Settings are ``ServerSettings`` fields with numeric values (``handshake_timeout=30``). It logs
warnings only (thousands of access lines would fill the test's pipe), prints ``serving`` once
bound, and ``stats {...}`` (the server's counters as JSON) when stopped by SIGTERM.
"""

from __future__ import annotations

import json
import logging
import sys

from ignitia_sync import Router, Server


def hold(ws):
    for _message in ws:
        pass


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
    settings = {name: float(value) if "." in value else int(value)
                for name, _, value in (arg.partition("=") for arg in sys.argv[2:])}
    server = Server(Router().websocket("/ws", hold), ("127.0.0.1", int(sys.argv[1])), **settings)
    server.start()
    print("serving", flush=True)
    server.ignitia()
    stats = server.stats()
    print("stats", json.dumps({"refused": stats["refused"], "total_connections": stats["total_connections"]}),
          flush=True)
