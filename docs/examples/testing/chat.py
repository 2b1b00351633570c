"""The application that docs/testing.md tests: chat rooms, and an admin route behind a token."""

from ignitia_sync import AuthMiddleware, Message, Router


def chat(ws, room):
    name = ws.request.query.get("name", "anonymous")
    ws.join(room)
    for message in ws:
        if isinstance(message, Message.Text):
            ws.registry.broadcast(Message.text(f"{name}: {message.data}"), room=room)


def admin(ws):
    ws.send_text(f"{len(ws.registry)} connections")


app = (
    Router()
    .websocket("/chat/:room", chat)
    .websocket("/admin", admin, middleware=[AuthMiddleware("s3cret-token")])
)
