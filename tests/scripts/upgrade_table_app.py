"""The apps of the upgrade table (tests/e2e/test_upgrade_table.py): the same routes under every host.

Routes: ``/ws/echo`` (an echo), ``/ws/guarded`` (the echo behind ``OriginCheck``); every host
has ``max_connections_per_ip=1``, set the way its users set it.

    gunicorn -k gevent tests.scripts.upgrade_table_app:wsgi_app                 # WebSocketMiddleware
    gunicorn -k ignitia_sync.gunicorn.Worker 'tests.scripts.upgrade_table_app:create_flask_app()'
    flask --app 'tests.scripts.upgrade_table_app:create_flask_app()' run        # Werkzeug, threaded
    python tests/scripts/upgrade_table_app.py PORT                              # gevent.pywsgi

The in-process ``Server`` and ``TestClient`` serve :data:`router` with :data:`HOST_SETTINGS`;
Django's project is :mod:`tests.scripts.upgrade_table_django`. The Flask app is made by a
factory, so that importing this module (the test, Django's settings) makes no Flask app.
"""

from __future__ import annotations

import sys
from typing import Any

from ignitia_sync import Message, OriginCheck, Router
from ignitia_sync.wsgi import WebSocketMiddleware

#: The host-wide settings of every column: a second upgrade from one IP gets 503.
HOST_SETTINGS: dict[str, Any] = {"max_connections_per_ip": 1}
GOOD_ORIGIN = "http://good.example"


def guard() -> OriginCheck:
    return OriginCheck([GOOD_ORIGIN])


def echo(ws):
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


router = Router().websocket("/ws/echo", echo).websocket("/ws/guarded", echo, middleware=[guard()])


def page(environ, start_response):
    body = f"page {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


#: A plain WSGI app with the router: gunicorn ``-k gevent`` and pywsgi serve it.
wsgi_app = WebSocketMiddleware(page, router, **HOST_SETTINGS)


def create_flask_app() -> Any:
    """A Flask app with the same routes through ``Sock``, its settings in ``app.config``."""
    from flask import Flask

    from ignitia_sync.flask import Sock

    app = Flask(__name__)
    app.config["IGNITIA_SYNC"] = dict(HOST_SETTINGS)
    sock = Sock(app)

    @sock.route("/ws/echo")
    def flask_echo(ws):
        while (data := ws.receive()) is not None:
            ws.send(data)

    @sock.route("/ws/guarded", middleware=[guard()])
    def flask_guarded(ws):
        flask_echo(ws)

    return app


if __name__ == "__main__":  # gevent's pywsgi, as a deployment runs it: patched, one process
    from gevent import monkey

    monkey.patch_all()
    from gevent.pywsgi import WSGIServer

    server = WSGIServer(("127.0.0.1", int(sys.argv[1])), wsgi_app, log=None)
    server.start()
    print("serving", flush=True)
    server.serve_forever()
