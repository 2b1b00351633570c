"""Tutorial step 1: chat rooms in a Flask app (docs/tutorial.md).

Run: ignitia-sync chat1:app --port 8000   (from this folder)
"""

from flask import Flask, request

from ignitia_sync import Message
from ignitia_sync.flask import Sock

app = Flask(__name__)
sock = Sock(app)


@sock.route("/ws/room/<room>")
def room_socket(ws, room):
    name = request.args.get("name", "anonymous")  # step 2 takes it from the session instead
    ws.join(room)  # a room of this process's registry; the connection leaves it when it closes
    for message in ws:
        if isinstance(message, Message.Text):
            ws.registry.broadcast(Message.text(f"{name}: {message.data}"), room=room)
