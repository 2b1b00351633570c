"""The guide's ``ChatServer``: every text goes to everyone else as "[id]: text".

Unlike the guide's recipe, the broadcast never waits on a slow client: each connection has
its own bounded outbox, and a client that stops reading is closed with 1008.

Run: python examples/chat_server.py [--port N]   or   ignitia-sync examples.chat_server:app
"""

from gevent import monkey

monkey.patch_all()

import uuid  # noqa: E402

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402


def handle_connection(ws: WebSocketConnection) -> None:
    registry = ws.registry
    assert registry is not None
    registry.identify(ws, uuid.uuid4().hex[:8])
    ws.send_text(f"you are {ws.id}")
    for message in ws:
        if isinstance(message, Message.Text):
            registry.broadcast(Message.text(f"[{ws.id}]: {message.data}"), exclude=ws)


app = Router().websocket("/chat", handle_connection)

if __name__ == "__main__":
    run(app)
