"""The guide's graceful shutdown: the handler sees the server stopping and says goodbye itself.

On SIGINT or SIGTERM the server stops accepting, sets ``server.shutdown_event``
(``ws.shutting_down``), sends everything still queued, closes every connection with 1001
"Server shutdown", waits up to ``shutdown_timeout`` and exits 0. This handler waits for
"a message or the shutdown" in one call (``recv(until_shutdown=True)``, no polling) and
sends a last message before closing.

Run: python examples/graceful_shutdown.py [--port N]   or   ignitia-sync examples.graceful_shutdown:app
"""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402


def handle_websocket(ws: WebSocketConnection) -> None:
    while True:
        message = ws.recv(until_shutdown=True)  # select over "a message" and "the shutdown signal"
        if ws.shutting_down:
            ws.send_text("Shutting down gracefully...")
            ws.close_with_reason(1001, "Server shutdown")
            break
        if message is None:
            break
        if isinstance(message, Message.Text):
            ws.send_text(f"Echo: {message.data}")


app = Router().websocket("/ws", handle_websocket)

if __name__ == "__main__":
    run(app)
