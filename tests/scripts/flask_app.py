"""A Flask app with WebSocket routes through ignitia_sync.flask.Sock, for the tests.

    ignitia-sync tests.scripts.flask_app:app --port 8000
    gunicorn -k ignitia_sync.gunicorn.Worker tests.scripts.flask_app:app
    flask --app tests.scripts.flask_app run --port 8000    # Werkzeug's development server
"""

from __future__ import annotations

import os
import threading

from flask import Blueprint, Flask, session, url_for
from flask import request as flask_request
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user

from ignitia_sync import Message
from ignitia_sync.flask import ConnectionClosed, Sock

app = Flask(__name__)
app.secret_key = "test only"
app.config["IGNITIA_SYNC"] = {"max_message_size": 8 << 20}
app.config["IGNITIA_SYNC_BACKPLANE"] = os.environ.get("IGNITIA_TEST_REDIS")  # None: this process only
login_manager = LoginManager(app)


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


@login_manager.user_loader
def load_user(user_id: str) -> User:
    return User(user_id)


sock = Sock()


@app.route("/login/<name>")
def login(name: str) -> str:
    session["name"] = name
    login_user(User(name))
    return "logged in"


@app.route("/resources")
def resources() -> str:
    """Open descriptors and threads of this process, for the leak tests."""
    return f"{len(os.listdir('/proc/self/fd'))} {threading.active_count()}"


@app.route("/")
def index() -> str:
    return f"rooms at {url_for('room', room='lobby')}, counting at {url_for('bp.count', n=3)}"


@sock.route("/ws/room/<room>")
def room(ws, room):
    ws.join(room)
    who = current_user.id if current_user.is_authenticated else "anonymous"
    ws.send(f"hello {session.get('name')} ({who}) in {room} at {flask_request.path}")
    try:
        while True:
            data = ws.receive()
            ws.registry.broadcast(Message.text(f"{session.get('name')}: {data}"), room=room)
    except ConnectionClosed:
        pass


@sock.route("/ws/private", decorators=[login_required])
def private(ws):
    ws.send(f"only for {current_user.id}")


bp = Blueprint("bp", __name__)


@sock.route("/ws/count/<int:n>", bp=bp)
def count(ws, n):
    for i in range(n):
        ws.send(str(i * 2))  # n is an int: Flask's converter ran
    ws.close(1000, "counted")


@sock.route("/ws/worker/<room>")
def worker_room(ws, room):
    """Says which process serves it, then relays each message to the room (every worker with a backplane)."""
    ws.join(room)
    ws.send(str(os.getpid()))
    while True:
        ws.registry.broadcast(Message.text(f"{os.getpid()}: {ws.receive()}"), room=room)


@app.route("/rss")
def rss() -> str:
    """This process's resident memory in KiB, for the bounded-memory tests."""
    with open("/proc/self/status") as status:
        return next(line.split()[1] for line in status if line.startswith("VmRSS:"))


#: Set by /release: /ws/stuck handlers block their thread until then.
released = threading.Event()


@app.route("/release")
def release() -> str:
    released.set()
    return "released"


@sock.route("/ws/stuck/<room>")
def stuck(ws, room):
    """Joins the room, then blocks its whole thread (unpatched under Werkzeug) until /release."""
    ws.join(room)
    ws.send("stuck")
    released.wait(60)
    while True:
        ws.receive()


@sock.route("/ws/echo")
def echo(ws):
    while ws.connected:
        data = ws.receive(timeout=30)
        if data is not None:
            ws.send(data)


app.register_blueprint(bp)
sock.init_app(app)
