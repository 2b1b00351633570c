"""Tutorial step 3: history, presence, a rate limit, and a page to chat from.

Run: CHAT_SECRET_KEY=change-me ignitia-sync chat3:app --port 8000   (from this folder)
then open http://127.0.0.1:8000/ in two browsers.
"""

import collections
import functools
import os
import re
import secrets
import time
from urllib.parse import urlsplit

from flask import Flask, Response, abort, redirect, render_template_string, request, session, url_for

from ignitia_sync import Message, TokenBucket
from ignitia_sync.flask import Sock

app = Flask(__name__)
app.secret_key = os.environ.get("CHAT_SECRET_KEY") or secrets.token_hex(32)
app.config["IGNITIA_SYNC"] = {"max_message_size": 4096, "ping_interval": 25}
sock = Sock(app)
ROOM = re.compile(r"[A-Za-z0-9_-]{1,32}")
history = collections.defaultdict(lambda: collections.deque(maxlen=50))  # room -> its last 50 messages
present = collections.defaultdict(collections.Counter)  # room -> name -> open connections

PAGE = """<!doctype html>
<title>{{ room }}</title>
<form method="post" action="/"><input name="name" value="{{ name }}" placeholder="your name">
  <input name="room" value="{{ room }}"><button>Enter</button></form>
<p id="here"></p><ul id="log"></ul>
<form id="say"><input id="text" autocomplete="off" maxlength="1000"><button>Send</button></form>
<script>
  const log = document.getElementById("log"), text = document.getElementById("text");
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + {{ ws_path|tojson }});
  function show(line) {  // textContent, never innerHTML: what others type stays text
    const li = document.createElement("li"); li.textContent = line; log.append(li);
  }
  ws.onmessage = (e) => {
    const event = JSON.parse(e.data);
    if (event.type === "history") event.messages.forEach((m) => show(`${m.user}: ${m.text}`));
    if (event.type === "message") show(`${event.user}: ${event.text}`);
    if (event.type === "error") show(event.text);
    if (event.type === "presence") document.getElementById("here").textContent = "here: " + event.users.join(", ");
  };
  ws.onclose = (e) => show(`disconnected (${e.code})`);
  document.getElementById("say").onsubmit = (e) => {
    e.preventDefault(); ws.send(JSON.stringify({type: "message", text: text.value})); text.value = "";
  };
</script>
"""


@app.route("/", methods=["GET", "POST"])
def index():
    room = request.values.get("room", "lobby")
    if request.method == "POST" and ROOM.fullmatch(room):
        session["name"] = " ".join(request.form.get("name", "").split())[:24] or "anonymous"
        return redirect(url_for("room_page", room=room))
    return redirect(url_for("room_page", room="lobby"))


@app.get("/room/<room>")
def room_page(room):
    if not ROOM.fullmatch(room):
        abort(404)
    ws_path = urlsplit(url_for("room_socket", room=room)).path  # url_for of a WebSocket route is ws://...
    return render_template_string(PAGE, room=room, name=session.get("name", ""), ws_path=ws_path)


def same_origin(view):
    """403 for an upgrade opened by another site's page (it would carry our session cookie)."""

    @functools.wraps(view)
    def checked(**params):
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
            return Response("cross-origin WebSocket refused\n", status=403, mimetype="text/plain")
        return view(**params)

    return checked


def signed_in(view):
    """401 for an upgrade without a name in the session."""

    @functools.wraps(view)
    def checked(**params):
        if "name" not in session:
            return Response("sign in first\n", status=401, mimetype="text/plain")
        return view(**params)

    return checked


def broadcast(room, event):
    sock.registry.broadcast(Message.json(event), room=room)  # never blocks on a slow member


@sock.route("/ws/room/<room>", decorators=[same_origin, signed_in])
def room_socket(ws, room):
    if not ROOM.fullmatch(room):
        ws.close(1008, "no such room")
        return
    name = session["name"]
    ws.join(room)  # first: what is said while we send the history is not missed
    ws.send_json({"type": "history", "messages": list(history[room])})
    present[room][name] += 1
    broadcast(room, {"type": "presence", "users": sorted(present[room])})
    try:
        chat(ws, room, name)
    finally:  # however the connection ended: the client left, a limit closed it, the server stops
        present[room][name] -= 1
        if present[room][name] <= 0:
            del present[room][name]
        broadcast(room, {"type": "presence", "users": sorted(present[room])})


def chat(ws, room, name):
    limiter = TokenBucket(rate=2, burst=8)  # 8 messages at once, then 2 a second
    for message in ws:
        if not isinstance(message, Message.Text):
            continue
        try:
            text = message.decode_json()["text"].strip()
        except (ValueError, KeyError, TypeError, AttributeError):
            text = ""
        if not 0 < len(text) <= 1000:
            ws.send_json({"type": "error", "text": 'send {"type": "message", "text": "..."}'})
        elif not limiter.allow():
            ws.send_json({"type": "error", "text": "Slow down: that message was not sent."})
        else:
            event = {"type": "message", "user": name, "text": text, "ts": int(time.time() * 1000)}
            history[room].append(event)
            broadcast(room, event)
