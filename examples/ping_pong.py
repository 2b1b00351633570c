"""The guide's ping/pong handling: pings are answered for you, and still shown to the handler.

Each ping or pong the client sends is reported back as a text message, so you can watch it.

Run: python examples/ping_pong.py [--port N]   or   ignitia-sync examples.ping_pong:app
"""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402


def handle_websocket(ws: WebSocketConnection) -> None:
    ws.send_text("Connected successfully!")
    while (message := ws.recv()) is not None:
        match message:
            case Message.Text(text):
                ws.send_text(f"Echo: {text}")
            case Message.Ping(data):
                ws.send_text(f"Received ping with {len(data)} bytes")
            case Message.Pong(data):
                ws.send_text(f"Received pong with {len(data)} bytes")
            case Message.Close(_):
                break


app = Router().websocket("/ws", handle_websocket)

if __name__ == "__main__":
    run(app)
