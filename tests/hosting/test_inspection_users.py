"""host.inspect_connections() with users: ``user_id`` is the connection's user, else its identify id;
``application_id`` is the identify id alone. A real server in its own thread, python-websockets clients.
"""

from __future__ import annotations

import contextlib

from websockets.sync.client import connect

from ignitia_sync import AuthInfo, AuthMiddleware, Message, Router
from tests.conftest import url


def commands(ws):
    """``user NAME`` sets the user, ``id NAME`` identifies; each is answered with "ok"."""
    ws.send_text("here")
    for message in ws:
        if isinstance(message, Message.Text):
            verb, _, name = message.data.partition(" ")
            if verb == "user":
                ws.registry.set_user(ws, name)
            elif verb == "id":
                ws.registry.identify(ws, name)
            ws.send_text("ok")


auth = AuthMiddleware(lambda token: AuthInfo(token) if token else None)
APP = Router().websocket("/ws", commands).websocket("/auth", commands, middleware=[auth])


def test_user_id_and_application_id_of_each_record(serve):
    server = serve(APP)
    with contextlib.ExitStack() as stack:

        def open_one(path: str, *said: str):
            client = stack.enter_context(connect(url(server, path), open_timeout=10))
            assert client.recv(timeout=10) == "here"
            for text in said:
                client.send(text)
                assert client.recv(timeout=10) == "ok"
            return client

        open_one("/ws", "user alice")
        open_one("/ws", "user alice", "id alice-phone")
        open_one("/ws", "id bob")
        open_one("/auth?token=carol")
        open_one("/ws")
        records = server.inspect_connections()
        seen = sorted((record.user_id or "", record.application_id or "") for record in records)
        assert seen == [("", ""), ("alice", ""), ("alice", "alice-phone"), ("bob", "bob"), ("carol", "")]
        assert {record.as_json()["application_id"] for record in records} == {None, "alice-phone", "bob"}
