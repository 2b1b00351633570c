"""A rooms-format server the client tests stop and start again: ``python -m ignitia_sync tests.client_rooms_server:router``."""

from __future__ import annotations

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL


def lobby(ws: WebSocketConnection) -> None:
    """Joins "lobby" (from the client's resume position); each message goes to the room, and back to the sender alone."""
    ws.join("lobby")
    for message in ws:
        if isinstance(message, Message.Text):
            ws.registry.broadcast(message, room="lobby")
            ws.send_text(f"you said {message.data}")
        elif isinstance(message, Message.Binary):
            ws.registry.broadcast(message, room="lobby")
            ws.send_bytes(b"you sent " + message.data)


router = Router()
router.websocket("/rooms", lobby, subprotocols=[SUBPROTOCOL])
