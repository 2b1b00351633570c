"""A user script that ends with the guide's ``Server(app, addr).ignitia()``: run by the tests.

    python tests/scripts/signal_server.py PORT

``/queue`` queues three messages to a peer that has not read yet, then waits; ``/admin``
stops the server from inside its handler (an admin "shutdown" route).
"""

from __future__ import annotations

import sys

from ignitia_sync import Message, Router, Server


def queue(ws):
    for n in range(3):
        ws.send_nowait(Message.text(f"queued {n}"))
    ws.send_text("ready")
    for _message in ws:
        pass


def admin(ws):
    ws.send_text("stopping")
    ws.server.stop()
    for _message in ws:
        pass


app = Router().websocket("/queue", queue).websocket("/admin", admin)

if __name__ == "__main__":
    server = Server(app, ("127.0.0.1", int(sys.argv[1])), shutdown_grace=0.2)
    server.start()  # bound before the test connects; ignitia() then serves until stopped
    print("serving", flush=True)
    server.ignitia()
    print("exited cleanly", flush=True)
