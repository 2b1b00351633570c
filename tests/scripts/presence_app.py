"""Presence across processes (tests/redis/test_presence_processes.py): a WSGI app on a Redis backplane.

    REDIS_URL=redis://127.0.0.1:6379/0 PRESENCE_TTL=1 ignitia-sync tests.scripts.presence_app:app --port 8001

``/rooms/:room/:user`` (the rooms wire format) is a connection of ``user`` in ``room``: it gets
``presence`` frames as users arrive and leave, in every process.
"""

from __future__ import annotations

import os

from ignitia_sync import Router, WebSocketConnection
from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL
from ignitia_sync.redis import RedisBackplane
from ignitia_sync.wsgi import WebSocketMiddleware


def not_found(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return [b""]


def room(ws: WebSocketConnection, room: str, user: str) -> None:
    ws.registry.set_user(ws, user)
    ws.join(room)
    for _ in ws:
        pass


backplane = RedisBackplane(os.environ["REDIS_URL"], presence_ttl=float(os.environ.get("PRESENCE_TTL", "20")),
                           reconnect_initial=0.05, reconnect_max=0.2)
app = WebSocketMiddleware(not_found, Router().websocket("/rooms/:room/:user", room, subprotocols=[SUBPROTOCOL]),
                          backplane=backplane, presence=True)
