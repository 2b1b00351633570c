"""A server process of test_user_revocation_processes.py: ``REDIS_URL=... python -m tests.redis.users_server --port N``.

Connections have users two ways: ``/auth?token=NAME`` through ``AuthMiddleware``'s ``verify``
(the token is the user's name: a test, not an authentication scheme), ``/tab?user=NAME``
through ``registry.set_user`` in the handler. Each greets ``hello NAME`` once its user is
set; then ``revoke NAME`` answers ``closed N`` (``registry.disconnect(NAME, 4001, "banned")``,
N closed in this process) and anything else is echoed.
"""

from __future__ import annotations

import os

from ignitia_sync import AuthInfo, AuthMiddleware, Message, Router, WebSocketConnection
from ignitia_sync.hosting.server import run
from ignitia_sync.redis import RedisBackplane


def notes(ws: WebSocketConnection) -> None:
    assert ws.registry is not None
    ws.send_text(f"hello {ws.user_id}")
    for message in ws:
        if isinstance(message, Message.Text) and message.data.startswith("revoke "):
            closed = ws.registry.disconnect(message.data[len("revoke "):], 4001, "banned")  # type: ignore[attr-defined]
            ws.send_text(f"closed {closed}")
        elif isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


def tab(ws: WebSocketConnection) -> None:
    assert ws.registry is not None
    ws.registry.set_user(ws, ws.request.query["user"])
    notes(ws)


auth = AuthMiddleware(lambda token: AuthInfo(token) if token else None)
app = Router().websocket("/auth", notes, middleware=[auth]).websocket("/tab", tab)

if __name__ == "__main__":
    run(app, backplane=RedisBackplane(os.environ["REDIS_URL"], reconnect_initial=0.05, reconnect_max=0.2))
