"""Rooms on a Redis backplane, for the fault tests of tests/redis/test_rooms_lose_nothing.py.

    REDIS_URL=redis://127.0.0.1:6379/0 [PEER_URL=http://127.0.0.1:8002] \\
        ignitia-sync tests.scripts.rooms_fault_app:app --port 8001

WebSocket routes (both accept the rooms wire format, ``ignitia.rooms.v1``; a plain client
gets plain frames):

* ``/rooms/:room``: joins ``room``; a plain client is then told ``joined`` (after ``join``
  returned: every later broadcast reaches it); reads until the client goes.
* ``/race/:room``: joins ``room``, then at once asks the process at ``PEER_URL`` (another
  server process, with a backplane of its own) to broadcast ``to ROOM`` to it.

HTTP (everything else):

* ``GET /broadcast?room=R&text=T``: this process broadcasts ``T`` to ``R`` (the registry's
  broadcast: its position comes from Redis).
* ``GET /stream?room=R&count=N&interval=S``: this process broadcasts ``"1"`` ... ``"N"`` to ``R``,
  one every ``S`` seconds, in a greenlet; answers at once.
* ``GET /stats``: JSON: ``pid``, the backplane's ``stats()``, ``streamed`` (how many the
  streams broadcast so far), ``gaps`` (gaps this process announced to members).

``ROOMS_FAULT_MUTANT`` (below) breaks a feature on purpose, to check that the tests see it.

Rooms keep ``History(max_messages=5000)``: enough for every message of a 1,000-message
stream, so that what a test shows is never a trimmed log.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request

import gevent

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.broadcast.positions import History
from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL
from ignitia_sync.redis import RedisBackplane
from ignitia_sync.wsgi import WebSocketMiddleware

PEER = os.environ.get("PEER_URL", "")
backplane = RedisBackplane(os.environ["REDIS_URL"], reconnect_initial=0.05, reconnect_max=0.5)
streamed = 0

# Mutants, to check that the tests fail without the feature (never set by the tests themselves):
# ROOMS_FAULT_MUTANT=no-listen-wait: a join does not wait for Redis to confirm the subscription;
# ROOMS_FAULT_MUTANT=drop-while-down: room messages are not kept while Redis is unreachable.
MUTANT = os.environ.get("ROOMS_FAULT_MUTANT", "")
if MUTANT == "no-listen-wait":
    backplane.listen_now = lambda room, timeout: True  # type: ignore[method-assign]
elif MUTANT == "drop-while-down":
    backplane.max_pending_age = 0.2  # what waits longer than a normal publish is dropped


def member(ws: WebSocketConnection, room: str) -> None:
    ws.join(room)
    if ws.subprotocol != SUBPROTOCOL:
        ws.send_text("joined")
    for _ in ws:
        pass


def racer(ws: WebSocketConnection, room: str) -> None:
    ws.join(room)
    query = urllib.parse.urlencode({"room": room, "text": f"to {room}"})
    with urllib.request.urlopen(f"{PEER}/broadcast?{query}", timeout=10) as answer:
        answer.read()
    for _ in ws:
        pass


def stream(room: str, count: int, interval: float) -> None:
    global streamed
    for n in range(1, count + 1):
        websockets.registry.broadcast(Message.text(str(n)), room=room)
        streamed += 1
        gevent.sleep(interval)


def http(environ, start_response):
    query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    path = environ["PATH_INFO"]
    if path == "/broadcast":
        websockets.registry.broadcast(Message.text(query["text"]), room=query["room"])
        body = b"ok"
    elif path == "/stream":
        gevent.spawn(stream, query["room"], int(query["count"]), float(query["interval"]))
        body = b"started"
    elif path == "/stats":
        ordered = websockets.registry._ordered
        body = json.dumps({"pid": os.getpid(), "backplane": backplane.stats(), "streamed": streamed,
                           "gaps": None if ordered is None else ordered.gaps}).encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


router = Router().websocket("/rooms/:room", member, subprotocols=[SUBPROTOCOL]).websocket(
    "/race/:room", racer, subprotocols=[SUBPROTOCOL])
websockets = WebSocketMiddleware(http, router, backplane=backplane,
                                 history=History(max_messages=5000, max_bytes=16 << 20, max_age=600.0))
app = websockets
