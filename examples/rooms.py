"""Rooms: "/join NAME", "/leave NAME", "/rooms", and "NAME: text" to talk in a room.

Run: python examples/rooms.py [--port N]   or   ignitia-sync examples.rooms:app
"""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402


def rooms(ws: WebSocketConnection) -> None:
    registry = ws.registry
    assert registry is not None
    for message in ws:
        if not isinstance(message, Message.Text):
            continue
        command, _, argument = message.data.partition(" ")
        if command == "/join" and argument:
            ws.join(argument)
            ws.send_text(f"joined {argument} ({len(registry.members(argument))} here)")
        elif command == "/leave" and argument:
            ws.leave(argument)
            ws.send_text(f"left {argument}")
        elif command == "/rooms":
            ws.send_text(", ".join(sorted(ws.rooms)) or "(none)")
        elif ":" in message.data:
            room, _, text = message.data.partition(":")
            if room not in ws.rooms:
                ws.send_text(f"join {room} first")
                continue
            registry.broadcast(Message.text(f"{room} <{ws.id}> {text.strip()}"), room=room, exclude=ws)
        else:
            ws.send_text("commands: /join NAME, /leave NAME, /rooms, NAME: text")


app = Router().websocket("/rooms", rooms)

if __name__ == "__main__":
    run(app)
