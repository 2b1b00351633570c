"""The guide's robust handler: ``recv_timeout`` and a keep-alive ping when the line is quiet.

Run: python examples/keepalive.py [--port N]   or   ignitia-sync examples.keepalive:app
Set IDLE_SECONDS in the environment to change the 30 s idle timeout.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402

from ignitia_sync import ConnectionClosed, Message, Router, WebSocketConnection, run  # noqa: E402

log = logging.getLogger("examples.keepalive")
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "30"))


def process_message(text: str) -> None:
    if not text.strip():
        raise ValueError("empty message")


def robust_websocket_handler(ws: WebSocketConnection) -> None:
    while True:
        message = ws.recv_timeout(IDLE_SECONDS)
        match message:
            case Message.Text(text):
                try:
                    process_message(text)
                    ws.send_text(f"ok: {text}")
                except ValueError as exc:
                    log.info("Error processing message: %s", exc)
                    ws.send_text("Error processing your message")
            case Message.Close(frame):
                if frame is not None:
                    log.info("Connection closed: %d - %s", frame.code, frame.reason)
                break
            case None:
                if ws.closed:
                    break
                log.info("No message received within timeout, checking connection...")
                try:
                    ws.ping("keepalive")
                except ConnectionClosed:
                    log.info("Connection lost")
                    break


app = Router().websocket("/robust", robust_websocket_handler)

if __name__ == "__main__":
    run(app)
