"""The guide's manual heartbeat: ``tokio::select!`` over a ticker and ``recv`` in gevent.

The handler waits for a message with ``recv_timeout`` until the next tick, so it pings
every ``HEARTBEAT_SECONDS`` while still answering each text at once.

Run: python examples/heartbeat.py [--port N]   or   ignitia-sync examples.heartbeat:app
Set HEARTBEAT_SECONDS in the environment to change the 30 s interval.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402


def make_heartbeat_handler(interval: float) -> Callable[[WebSocketConnection], None]:
    def websocket_with_heartbeat(ws: WebSocketConnection) -> None:
        next_tick = time.monotonic() + interval
        while True:
            message = ws.recv_timeout(max(0.0, next_tick - time.monotonic()))
            if message is None:
                if ws.closed:
                    break  # connection closed
                ws.ping("heartbeat")  # the tick fired
                next_tick += interval
                continue
            match message:
                case Message.Text(text):
                    ws.send_text(f"Got: {text}")
                case Message.Close(_):
                    break

    return websocket_with_heartbeat


app = Router().websocket(
    "/heartbeat", make_heartbeat_handler(float(os.environ.get("HEARTBEAT_SECONDS", "30")))
)

if __name__ == "__main__":
    run(app)
