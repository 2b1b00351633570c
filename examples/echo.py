"""The guide's simple echo server: text comes back as "Echo: ...", binary unchanged.

Run: python examples/echo.py [--port N]   or   ignitia-sync examples.echo:app
"""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402


def echo(ws: WebSocketConnection) -> None:
    while (message := ws.recv()) is not None:
        match message:
            case Message.Text(text):
                ws.send_text(f"Echo: {text}")
            case Message.Binary(data):
                ws.send_bytes(data)
            case Message.Close(_):
                break
            case _:
                pass  # pings are answered automatically


app = Router().websocket("/echo", echo)

if __name__ == "__main__":
    run(app)
