"""websockets' threading server (websockets.sync.server), compression off."""

import argparse

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

listeners = set()


def handler(ws):
    if ws.request.path == "/broadcast":
        listeners.add(ws)
        try:
            for message in ws:
                for other in list(listeners):
                    if other is not ws:
                        try:
                            other.send(message)
                        except ConnectionClosed:
                            pass
        finally:
            listeners.discard(ws)
    else:
        for message in ws:
            ws.send(message)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with serve(handler, "127.0.0.1", args.port, compression=None, max_size=None) as server:
        print(f"listening on ws://127.0.0.1:{args.port}", flush=True)
        server.serve_forever()
