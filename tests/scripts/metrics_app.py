"""A WSGI app with a WebSocket route and ignitia_sync.metrics mounted at /metrics (the gunicorn metrics test).

    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics gunicorn -w 2 -k ignitia_sync.gunicorn.Worker tests.scripts.metrics_app:app

``/echo`` first says which worker (process id) serves it, then echoes.
"""

from __future__ import annotations

import os

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.metrics import mount, wsgi_app
from ignitia_sync.wsgi import WebSocketMiddleware


def page(environ, start_response):
    body = b"page\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def echo(ws: WebSocketConnection) -> None:
    ws.send_text(str(os.getpid()))
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


router = Router().websocket("/echo", echo)
app = WebSocketMiddleware(mount("/metrics", wsgi_app(), page), router)
