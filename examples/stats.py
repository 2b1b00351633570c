"""Server statistics over a WebSocket: ``/stats`` sends ``server.stats()`` as JSON each second.

``/echo`` is there to make some traffic to watch.

Run: python examples/stats.py [--port N]   or   ignitia-sync examples.stats:app
"""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402


def stats(ws: WebSocketConnection) -> None:
    assert ws.server is not None
    while not ws.closed:
        ws.send_json(ws.server.stats())
        message = ws.recv_timeout(1.0)
        if isinstance(message, Message.Close):
            break


def echo(ws: WebSocketConnection) -> None:
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


app = Router().websocket("/stats", stats).websocket("/echo", echo)

if __name__ == "__main__":
    run(app)
