"""A plain WSGI app with WebSocket routes, for the embedding tests (gunicorn, pywsgi, Werkzeug).

    gunicorn -k ignitia_sync.gunicorn.Worker tests.scripts.wsgi_app:app
    python tests/scripts/wsgi_app.py PORT             # gevent.pywsgi
    python tests/scripts/wsgi_app.py PORT werkzeug    # Werkzeug's threaded development server
    python tests/scripts/wsgi_app.py PORT wsgiref     # a server that does not give its sockets out
"""

from __future__ import annotations

import sys

from ignitia_sync import AuthMiddleware, Message, Router
from ignitia_sync.wsgi import WebSocketMiddleware


def page(environ, start_response):
    body = f"page {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def echo(ws):
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


def hold(ws):
    ws.send_text("ready")
    for _message in ws:
        pass


def queued(ws):
    """Queues 800 KiB at once (the peer reads slowly), then waits: a stop must send it all first."""
    for i in range(800):
        ws.send_nowait(Message.text(f"{i:04d}" + "x" * 1020))
    for _message in ws:
        pass


def flood(ws):
    """Sends until the peer stops reading; send_timeout then closes it (1008)."""
    chunk = b"x" * 65536
    while True:
        ws.send_bytes(chunk)


router = (
    Router()
    .websocket("/ws/echo", echo, max_message_size=8 << 20)
    .websocket("/ws/flood", flood, send_timeout=1.0)
    .websocket("/ws/queued", queued)
    .websocket("/ws/hold", hold)
    .websocket("/ws/secure", echo, middleware=[AuthMiddleware("secret")])
)
app = WebSocketMiddleware(page, router)

def serve_with_werkzeug(port: int) -> None:
    """Werkzeug's development server, threaded and not monkey-patched (Ctrl-C stops it)."""
    import signal

    from werkzeug.serving import run_simple

    # Ctrl-C, even when started in the background (where SIGINT may arrive ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print("serving", flush=True)
    run_simple("127.0.0.1", port, app, threaded=True)


def serve_with_wsgiref(port: int) -> None:
    """The standard library's WSGI server: like uWSGI or mod_wsgi, it keeps its sockets."""
    import logging
    from wsgiref.simple_server import make_server

    logging.basicConfig(level=logging.INFO)
    print("serving", flush=True)
    make_server("127.0.0.1", port, app).serve_forever()


if __name__ == "__main__" and sys.argv[2:] == ["werkzeug"]:
    serve_with_werkzeug(int(sys.argv[1]))
elif __name__ == "__main__" and sys.argv[2:] == ["wsgiref"]:
    serve_with_wsgiref(int(sys.argv[1]))
elif __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    import signal

    import gevent
    from gevent.pywsgi import WSGIServer

    server = WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=None)

    def stop() -> None:  # what a pywsgi deployment does on SIGTERM: 1001 to everyone, then stop
        app.shutdown()
        server.stop(timeout=10)

    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(stop))
    server.start()
    print("serving", flush=True)
    server.serve_forever()
