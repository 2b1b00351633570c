"""The guide's real-time ``ChatRoom`` at ``/chat/:user_id``: JSON ChatMessages to everyone.

Each valid ``{"user", "message", "timestamp"}`` text is sent to every user in the room,
the sender included (the guide's ``broadcast::Sender``); anything else gets an error reply.

Run: python examples/chat_room.py [--port N]   or   ignitia-sync examples.chat_room:app
"""

from gevent import monkey

monkey.patch_all()

from dataclasses import dataclass  # noqa: E402

from ignitia_sync import Message, MessageDecodeError, Router, WebSocketConnection, run  # noqa: E402

ROOM = "chat"


@dataclass
class ChatMessage:
    user: str
    message: str
    timestamp: int


def parse(message: Message.Text) -> ChatMessage:
    data = message.decode_json()
    if not isinstance(data, dict):
        raise MessageDecodeError("expected a JSON object")
    try:
        chat = ChatMessage(**data)
    except TypeError as exc:
        raise MessageDecodeError(f"not a ChatMessage: {exc}") from None
    if not (isinstance(chat.user, str) and isinstance(chat.message, str) and isinstance(chat.timestamp, int)):
        raise MessageDecodeError("user and message must be strings, timestamp an integer")
    return chat


def handle_user(ws: WebSocketConnection, user_id: str) -> None:
    registry = ws.registry
    assert registry is not None
    try:
        registry.identify(ws, user_id)
    except ValueError:
        ws.close_with_reason(1008, "user already connected")
        return
    ws.join(ROOM)
    for message in ws:
        if isinstance(message, Message.Text):
            try:
                chat = parse(message)
            except MessageDecodeError as exc:
                ws.send_json({"error": str(exc)})
                continue
            registry.broadcast(Message.json(chat), room=ROOM)


app = Router().websocket("/chat/:user_id", handle_user)

if __name__ == "__main__":
    run(app)
