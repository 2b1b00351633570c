"""ignitia_sync under benchmark: /echo returns every message, /broadcast forwards to all others."""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import ConnectionClosed, Message, Router, WebSocketConnection, run  # noqa: E402

listeners: set[WebSocketConnection] = set()


def echo(ws: WebSocketConnection) -> None:
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


def broadcast(ws: WebSocketConnection) -> None:
    listeners.add(ws)
    try:
        for message in ws:
            if isinstance(message, Message.Text):
                for other in list(listeners):
                    if other is not ws:
                        try:
                            other.send(message)
                        except ConnectionClosed:
                            pass
    finally:
        listeners.discard(ws)


app = Router().websocket("/echo", echo).websocket("/broadcast", broadcast)

if __name__ == "__main__":
    run(app, compression=None)
