"""A WSGI app and WebSocket routes on one port, served by gevent's pywsgi (docs/wsgi-servers.md).

Run: PORT=8000 python docs/examples/pywsgi_app.py
"""

from gevent import monkey; monkey.patch_all()  # before anything else, as gunicorn's gevent worker does
import os
import signal

import gevent
from gevent.pywsgi import WSGIServer

from ignitia_sync import Message, Router
from ignitia_sync.wsgi import WebSocketMiddleware


def hello(environ, start_response):  # your WSGI app: Flask, Django, anything
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain HTTP goes to the wrapped app\n"]


def echo(ws):
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


app = WebSocketMiddleware(hello, Router().websocket("/ws/echo", echo))
server = WSGIServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), app)


def stop():
    app.shutdown()  # every WebSocket gets 1001 "Server shutdown" (after what is queued to it)
    server.stop(timeout=10)


gevent.signal_handler(signal.SIGTERM, stop)
gevent.signal_handler(signal.SIGINT, stop)
print(f"serving http://127.0.0.1:{server.address[1]}/ and ws://127.0.0.1:{server.address[1]}/ws/echo", flush=True)
server.serve_forever()
