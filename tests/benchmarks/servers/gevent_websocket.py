"""gevent-websocket's WebSocketHandler on gevent's WSGI server."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402
from geventwebsocket.exceptions import WebSocketError  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

listeners = set()


def app(environ, start_response):
    ws = environ["wsgi.websocket"]
    try:
        if environ["PATH_INFO"] == "/broadcast":
            listeners.add(ws)
            try:
                while (message := ws.receive()) is not None:
                    for other in list(listeners):
                        if other is not ws:
                            try:
                                other.send(message)
                            except WebSocketError:
                                pass
            finally:
                listeners.discard(ws)
        else:
            while (message := ws.receive()) is not None:
                ws.send(message, binary=isinstance(message, (bytes, bytearray)))
    except WebSocketError:
        pass
    return []


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    server = WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler, log=None)
    print(f"listening on ws://127.0.0.1:{port}", flush=True)
    server.serve_forever()
