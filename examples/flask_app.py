"""A Flask app with an HTTP page, a WebSocket echo and a session-aware WebSocket route.

Run: ignitia-sync examples.flask_app:app --port 8000
 or: gunicorn -k ignitia_sync.gunicorn.Worker -w 2 examples.flask_app:app
 or: flask --app examples.flask_app run --port 8000        (Werkzeug's dev server)

Open http://127.0.0.1:8000/, sign in with /signin/<name>, then talk to /ws/echo and
/ws/hello (which greets the name kept in the Flask session).
"""

from flask import Flask, session, url_for

from ignitia_sync.flask import Sock

app = Flask(__name__)
app.secret_key = "change me"  # signs the session cookie that the WebSocket route reads
sock = Sock(app)


@app.route("/")
def index() -> str:
    return f"<p>Echo at {url_for('echo')}; greetings at {url_for('hello')}.</p>"


@app.route("/signin/<name>")
def signin(name: str) -> str:
    session["name"] = name
    return f"signed in as {name}"


@sock.route("/ws/echo")
def echo(ws):
    while (data := ws.receive()) is not None:
        ws.send(data)


@sock.route("/ws/hello")
def hello(ws):
    ws.send(f"hello {session.get('name', 'stranger')}")  # the upgrade request's session
