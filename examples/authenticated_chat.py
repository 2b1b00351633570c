"""The guide's "WebSocket with Authentication": AuthMiddleware before the upgrade, AuthInfo after.

Connect with ``Authorization: Bearer secret-token``, ``?token=secret-token`` (browsers) or a
``token`` cookie; anything else gets 401 before the upgrade. Set AUTH_TOKEN to change it.

Run: python examples/authenticated_chat.py [--port N]   or   ignitia-sync examples.authenticated_chat:app
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

from ignitia_sync import AuthInfo, AuthMiddleware, Message, Router, WebSocketConnection, run  # noqa: E402


def process_authenticated_message(user: str, text: str) -> str:
    return f"{user}: {text}"


def authenticated_websocket(ws: WebSocketConnection) -> None:
    auth: AuthInfo = ws.extension(AuthInfo)
    ws.send_json({"type": "welcome", "user_id": auth.user_id, "message": "Welcome to the authenticated channel!"})
    while (message := ws.recv()) is not None:
        match message:
            case Message.Text(text):
                ws.send_text(process_authenticated_message(auth.user_id, text))
            case Message.Close(_):
                break


app = (
    Router()
    # a shared token says nobody's name: user_id= is the one identity it stands for
    .middleware(AuthMiddleware(os.environ.get("AUTH_TOKEN", "secret-token"), user_id="guest"))
    .websocket("/secure-chat", authenticated_websocket)
)

if __name__ == "__main__":
    run(app)
