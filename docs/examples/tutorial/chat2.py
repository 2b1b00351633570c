"""Tutorial step 2: who is talking comes from the signed session; guards answer before the 101.

Run: CHAT_SECRET_KEY=change-me ignitia-sync chat2:app --port 8000   (from this folder)
"""

import functools
import os
import secrets
import time
from urllib.parse import urlsplit

from flask import Flask, Response, request, session

from ignitia_sync import Message
from ignitia_sync.flask import Sock

app = Flask(__name__)
# Every worker and host must share this key: it signs the session cookie (the user's name).
app.secret_key = os.environ.get("CHAT_SECRET_KEY") or secrets.token_hex(32)
app.config["IGNITIA_SYNC"] = {"max_message_size": 4096, "ping_interval": 25}
sock = Sock(app)


@app.post("/signin")
def signin():
    session["name"] = " ".join(request.form["name"].split())[:24] or "anonymous"
    return f"signed in as {session['name']}\n"


def same_origin(view):
    """403 for an upgrade opened by another site's page (it would carry our session cookie)."""

    @functools.wraps(view)
    def checked(**params):
        origin = request.headers.get("Origin")  # browsers always send one; other clients have no cookie of ours
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


@sock.route("/ws/room/<room>", decorators=[same_origin, signed_in])
def room_socket(ws, room):
    name = session["name"]  # from the signed cookie of the upgrade request, never from the client
    ws.join(room)
    for message in ws:
        if not isinstance(message, Message.Text):
            continue
        try:
            text = message.decode_json()["text"].strip()
        except (ValueError, KeyError, TypeError, AttributeError):
            ws.send_json({"type": "error", "text": 'send {"type": "message", "text": "..."}'})
            continue
        event = {"type": "message", "user": name, "text": text[:1000], "ts": int(time.time() * 1000)}
        sock.registry.broadcast(Message.json(event), room=room)
