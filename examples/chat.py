"""The guide's ``.websocket_fn()`` example: a welcome, then "You said: ..." for each text.

Run: python examples/chat.py [--port N]   or   ignitia-sync examples.chat:app
"""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402


def handle_websocket(ws: WebSocketConnection) -> None:
    ws.send_text("Welcome to the chat!")
    for message in ws:
        if isinstance(message, Message.Text):
            ws.send_text(f"You said: {message.data}")


app = Router().websocket_fn("/chat", handle_websocket)

if __name__ == "__main__":
    run(app)
