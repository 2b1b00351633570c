"""ignitia_sync under benchmark: /echo returns every message, /broadcast forwards to all others."""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402


def echo(ws: WebSocketConnection) -> None:
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


def broadcast(ws: WebSocketConnection) -> None:
    """Forward every text to all other /broadcast connections through the registry."""
    registry = ws.registry
    assert registry is not None
    ws.join("broadcast")
    for message in ws:
        if isinstance(message, Message.Text):
            registry.broadcast(message, room="broadcast", exclude=ws)


app = Router().websocket("/echo", echo).websocket("/broadcast", broadcast)

if __name__ == "__main__":
    run(app, compression=None)
