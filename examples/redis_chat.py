"""The chat room across processes: run it twice (or on several hosts) with one Redis.

Run: REDIS_URL=redis://127.0.0.1:6379/0 python examples/redis_chat.py --port 8001
     REDIS_URL=redis://127.0.0.1:6379/0 python examples/redis_chat.py --port 8002
With a Redis Cluster (sharded pub/sub), give one node and REDIS_SHARDED=1.

Connect to ws://127.0.0.1:8001/chat/ROOM/USER on either process: every member of ROOM hears
every message, whichever process it is on; "@bob text" reaches bob only, wherever he is
(``registry.send_to``); ``/stats`` sends the backplane's counters once.
"""

import os

from gevent import monkey

monkey.patch_all()

import simplejson as json  # noqa: E402

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402
from ignitia_sync.redis import RedisBackplane  # noqa: E402


def chat(ws: WebSocketConnection, room: str, user: str) -> None:
    registry = ws.registry
    assert registry is not None
    try:
        registry.identify(ws, user)  # send_to(user) finds this connection from any process
    except ValueError:
        ws.close(1008, "this name is taken here")
        return
    ws.join(room)
    registry.broadcast(Message.text(f"* {user} joined {room}"), room=room)
    for message in ws:
        if not isinstance(message, Message.Text):
            continue
        if message.data.startswith("@"):
            target, _, text = message.data[1:].partition(" ")
            if not registry.send_to(target, Message.text(f"{user} (to you): {text}")):
                ws.send_text(f"nobody is called {target}")
        else:
            registry.broadcast(Message.text(f"{user}: {message.data}"), room=room)


def stats(ws: WebSocketConnection) -> None:
    assert ws.registry is not None
    ws.send_text(json.dumps(ws.registry.backplane.stats()))


app = Router().websocket("/chat/:room/:user", chat).websocket("/stats", stats)

if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    run(app, backplane=RedisBackplane(url, sharded=os.environ.get("REDIS_SHARDED") == "1"))
