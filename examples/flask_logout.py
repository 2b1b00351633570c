"""Sign out everywhere: the logout view closes the user's WebSockets in every process (docs/operating.md).

    export SECRET_KEY=... REDIS_URL=redis://127.0.0.1:6379/0
    gunicorn -k ignitia_sync.gunicorn.Worker -w 4 examples.flask_logout:app

Each connection is identified as its user (``identify``); ``POST /logout`` calls
``sock.registry.disconnect(user, 1008, "signed out")``, which closes the connection of this
process at once and, through Redis, the user's connections in the other processes.
"""

import functools
import os

from flask import Flask, abort, request, session

from ignitia_sync.flask import ConnectionClosed, Sock

app = Flask(__name__)
app.secret_key = os.environ["SECRET_KEY"]  # the same in every process: any of them reads the session
app.config["IGNITIA_SYNC_BACKPLANE"] = os.environ.get("REDIS_URL")  # None: one process only
sock = Sock(app)


def signed_in(view):
    """Refuse with 401 (before the 101, for a WebSocket route) unless the session has a user."""

    @functools.wraps(view)
    def checked(*args, **kwargs):
        if "user" not in session:
            abort(401)
        return view(*args, **kwargs)

    return checked


@app.post("/login")
def login():
    session["user"] = request.form["name"]  # check a password here
    return "signed in"


@app.post("/logout")
@signed_in
def logout():
    user = session.pop("user")
    closed = sock.registry.disconnect(user, 1008, "signed out")  # here and, through Redis, elsewhere
    return f"signed out ({closed} connection closed in this process)"


@sock.route("/ws/notes", decorators=[signed_in])
def notes(ws):
    user = session["user"]
    try:
        # One connection per id and process; the newest one, wherever it is, gets send_to(user, ...).
        ws.registry.identify(ws, user, take_over=True)
    except ValueError:
        ws.close(4409, "already connected here")
        return
    ws.send(f"hello {user}")
    try:
        while True:
            ws.send(f"noted: {ws.receive()}")
    except ConnectionClosed:
        pass
