"""An echo server for the Autobahn|Testsuite: every text and binary message back unchanged.

Compression is on and the message limit is 32 MiB, for the 16 MiB cases of group 9.

wstest connects to paths such as /runCase?case=1, so the route takes every path.
``wsgi_app`` serves the same route inside a WSGI app (plain HTTP requests get a 404),
for the suite under gunicorn.

Run: python examples/autobahn.py [--port N]   or   ignitia-sync examples.autobahn:app
 or: gunicorn -k ignitia_sync.gunicorn.Worker -w 1 examples.autobahn:wsgi_app
"""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402
from ignitia_sync.wsgi import WebSocketMiddleware  # noqa: E402

MAX_MESSAGE_SIZE = 32 * 1024 * 1024


def echo(ws: WebSocketConnection, path: str = "") -> None:
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


def not_found(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"WebSocket only\n"]


app = Router().websocket("/*path", echo, max_message_size=MAX_MESSAGE_SIZE, compression="deflate")
wsgi_app = WebSocketMiddleware(not_found, app)

if __name__ == "__main__":
    run(app)
