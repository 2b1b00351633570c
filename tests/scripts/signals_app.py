"""A WSGI app for tests/e2e/test_gunicorn_signals.py: WebSocketMiddleware with a short close_timeout.

    gunicorn -k ignitia_sync.gunicorn.Worker tests.scripts.signals_app:app
    gunicorn -k sync tests.scripts.signals_app:app      # refused: 500 and one log line
"""

from __future__ import annotations

import os

from ignitia_sync import Router
from ignitia_sync.wsgi import WebSocketMiddleware


def page(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def hold(ws):
    ws.send_text(f"ready {os.getpid()}")
    for _message in ws:
        pass


app = WebSocketMiddleware(page, Router().websocket("/ws/hold", hold), close_timeout=0.5)
