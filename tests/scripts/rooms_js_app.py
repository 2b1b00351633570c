"""ignitia-rooms.js against a real server: tests/e2e/test_rooms_js.py runs it as a user would.

    ignitia-sync tests.scripts.rooms_js_app:app --port 8001

``/``: an empty page that loads ``/ignitia-rooms.js`` (served by ``javascript_app``); the test
builds the client in it. ``/rooms/:room`` speaks the rooms wire format: once the gate is open
it joins ``room``, then broadcasts to it what the client sends ("direct:X" is answered
"you said X" to the sender alone). ``/plain/:room``: the same without the subprotocol.
``/control`` (plain JSON, one answer per command) lets the test act on the server:

* ``{"op": "broadcast", "room": R, "texts": [...], "binary": [[0, 255], ...]}``;
* ``{"op": "kick", "code": 1012, "reason": "", "hold": true, "room": R, "texts": [...]}``:
  closes every connection of ``/rooms`` with ``code`` (with ``hold``, new ones wait at the
  gate before joining), waits until their handlers are done, then broadcasts ``texts``;
* ``{"op": "gate", "open": true}``: lets held connections join;
* ``{"op": "opened"}``: how many connections ``/rooms`` had so far.
"""

from __future__ import annotations

import json
import time
from typing import Any

import gevent.event

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL
from ignitia_sync.javascript import javascript_app
from ignitia_sync.wsgi import WebSocketMiddleware

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>rooms</title></head>
<body><ul id="log"></ul><script src="/ignitia-rooms.js"></script></body></html>
"""

GATE = gevent.event.Event()
GATE.set()
LIVE: set[WebSocketConnection] = set()
OPENED = [0]


def rooms(ws: WebSocketConnection, room: str) -> None:
    OPENED[0] += 1
    LIVE.add(ws)
    try:
        GATE.wait()
        ws.join(room)
        for message in ws:
            if isinstance(message, Message.Text) and message.data.startswith("direct:"):
                ws.send_text("you said " + message.data.removeprefix("direct:"))
            elif isinstance(message, (Message.Text, Message.Binary)):
                ws.registry.broadcast(message, room=room)
    finally:
        LIVE.discard(ws)


def _broadcast(ws: WebSocketConnection, command: dict[str, Any]) -> None:
    room = command.get("room", "lobby")
    for text in command.get("texts", ()):
        ws.registry.broadcast(Message.text(text), room=room)
    for data in command.get("binary", ()):
        ws.registry.broadcast(Message.binary(bytes(data)), room=room)


def control(ws: WebSocketConnection) -> None:
    for message in ws:
        if not isinstance(message, Message.Text):
            continue
        command = json.loads(message.data)
        op = command["op"]
        if op == "broadcast":
            _broadcast(ws, command)
        elif op == "kick":
            if command.get("hold"):
                GATE.clear()
            kicked = list(LIVE)
            for each in kicked:
                each.close(command["code"], command.get("reason", ""))
            deadline = time.monotonic() + 10
            while any(each in LIVE for each in kicked) and time.monotonic() < deadline:
                gevent.sleep(0.01)  # the server's own loop: their handlers end as their closes complete
            _broadcast(ws, command)
        elif op == "gate":
            GATE.set() if command["open"] else GATE.clear()
        room = command.get("room", "lobby")
        position = ws.registry.position(room)
        ws.send_text(json.dumps({"ok": True, "opened": OPENED[0], "live": len(LIVE),
                                 "position": None if position is None else position.as_json()}))


def plain(ws: WebSocketConnection, room: str) -> None:
    ws.join(room)
    for _ in ws:
        pass


def pages(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/ignitia-rooms.js":
        return list(javascript_app(environ, start_response))
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(PAGE)))])
        return [PAGE]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return []


router = (
    Router()
    .websocket("/rooms/:room", rooms, subprotocols=[SUBPROTOCOL])
    .websocket("/plain/:room", plain)
    .websocket("/control", control)
)
app = WebSocketMiddleware(pages, router)
