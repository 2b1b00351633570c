"""The guide's error recovery: answer each failure, close with 1011 after MAX_ERRORS in a row.

Text messages must hold an integer (answered with its square); binary data must not be
empty (answered reversed). Anything else is an error.

Run: python examples/error_recovery.py [--port N]   or   ignitia-sync examples.error_recovery:app
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402

log = logging.getLogger("examples.error_recovery")
MAX_ERRORS = 5


def handle_message(ws: WebSocketConnection, message: Message) -> None:
    match message:
        case Message.Text(text):
            ws.send_text(str(int(text) ** 2))
        case Message.Binary(data):
            if not data:
                raise ValueError("empty binary message")
            ws.send_bytes(data[::-1])


def resilient_websocket(ws: WebSocketConnection) -> None:
    error_count = 0
    for message in ws:
        try:
            handle_message(ws, message)
            error_count = 0  # reset on success
        except ValueError as exc:
            error_count += 1
            log.info("Error handling message (%d): %s", error_count, exc)
            if error_count >= MAX_ERRORS:
                ws.close_with_reason(1011, "Too many errors")
                break
            ws.send_text(f"Error: {exc}")


app = Router().websocket("/resilient", resilient_websocket)

if __name__ == "__main__":
    run(app)
