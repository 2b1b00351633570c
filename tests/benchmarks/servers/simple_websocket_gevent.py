"""simple-websocket (what flask-sock uses) on gevent's WSGI server."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402

import simple_websocket  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

listeners = set()


def app(environ, start_response):
    ws = simple_websocket.Server(environ, max_message_size=None)
    try:
        if environ["PATH_INFO"] == "/broadcast":
            listeners.add(ws)
            try:
                while True:
                    message = ws.receive()
                    for other in list(listeners):
                        if other is not ws:
                            try:
                                other.send(message)
                            except simple_websocket.ConnectionClosed:
                                pass
            finally:
                listeners.discard(ws)
        else:
            while True:
                ws.send(ws.receive())
    except simple_websocket.ConnectionClosed:
        pass
    return []


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    server = WSGIServer(("127.0.0.1", port), app, log=None)
    print(f"listening on ws://127.0.0.1:{port}", flush=True)
    server.serve_forever()
