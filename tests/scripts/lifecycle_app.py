"""A Flask app for the worker life-cycle tests: which process answers, HTTP views that broadcast.

    gunicorn -k ignitia_sync.gunicorn.Worker -w 2 tests.scripts.lifecycle_app:app
    IGNITIA_TEST_REDIS=redis://127.0.0.1:6379/0 gunicorn ...   # a Redis backplane

Every answer names the process that gave it, so that a test knows which worker served it.
"""

from __future__ import annotations

import os
import socket

from flask import Flask, request

from ignitia_sync import Message
from ignitia_sync.flask import ConnectionClosed, Sock

app = Flask(__name__)
app.config["IGNITIA_SYNC_BACKPLANE"] = os.environ.get("IGNITIA_TEST_REDIS")  # None: this process only
sock = Sock(app)


@app.route("/pid")
def pid() -> str:
    return str(os.getpid())


@app.route("/broadcast/<room>", methods=["POST"])
def broadcast(room: str) -> str:
    """An HTTP view that broadcasts to a room (in this worker and, with Redis, in every other)."""
    sock.registry.broadcast(Message.text(request.get_data(as_text=True)), room=room)
    return str(os.getpid())


@sock.route("/ws/room/<room>")
def member(ws, room):
    ws.join(room)
    ws.send(f"joined {os.getpid()}")
    try:
        while True:
            ws.receive()
    except ConnectionClosed:
        pass


@sock.route("/ws/hold")
def hold(ws):
    ws.send(f"ready {os.getpid()}")
    try:
        while True:
            ws.receive()
    except ConnectionClosed:
        pass


@sock.route("/ws/queued")
def queued(ws):
    """Queues 800 KiB at once (the peer reads slowly), then waits: a stop must send it all first.

    The kernel's send buffer is made small, so that nearly all of it waits in our own queue.
    """
    server_socket = request.environ.get("gunicorn.socket")
    if server_socket is not None:
        server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    for i in range(800):
        ws.send_nowait(Message.text(f"{i:04d}" + "x" * 1020))
    try:
        while True:
            ws.receive()
    except ConnectionClosed:
        pass
