"""A WSGI app with rooms on a Redis backplane and the cluster inspection endpoint (tests/redis/test_inspection_processes.py).

    REDIS_URL=redis://127.0.0.1:6379/0 INSPECT_TOKEN=... ignitia-sync tests.scripts.inspect_app:app --port 8001

``/rooms/:room/:user`` joins ``room``, identifies the connection as ``user`` (taken over; ``-``: none),
says ``"ID PID"`` (its own id, the process), then echoes. ``/connections`` is the
endpoint, in cluster mode (``INSPECT_TIMEOUT`` seconds, 2 by default).
"""

from __future__ import annotations

import os

from ignitia_sync import Router, WebSocketConnection
from ignitia_sync.hosting.inspection_endpoint import ConnectionsEndpoint
from ignitia_sync.wsgi import WebSocketMiddleware


def not_found(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return [b""]


def room(ws: WebSocketConnection, room: str, user: str) -> None:
    own_id = ws.id
    ws.join(room)
    if user != "-":
        ws.registry.identify(ws, user, take_over=True)  # one connection per user and process
    ws.send_text(f"{own_id} {os.getpid()}")
    for message in ws:
        ws.send(message)


websockets = WebSocketMiddleware(not_found, Router().websocket("/rooms/:room/:user", room),
                                 backplane=os.environ["REDIS_URL"])
app = ConnectionsEndpoint.cluster(websockets, token=os.environ["INSPECT_TOKEN"], app=websockets,
                                  timeout=float(os.environ.get("INSPECT_TIMEOUT", "2")))
