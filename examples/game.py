"""The guide's game server: tagged JSON messages (Join, Move, Leave) and tagged replies.

Client → server: {"type": "Join", "player_name": "..."}, {"type": "Move", "x": 1, "y": 2},
{"type": "Leave"}. Server → client: {"type": "Joined", ...}, {"type": "MoveResult", ...},
{"type": "Error", "message": "..."}.

Run: python examples/game.py [--port N]   or   ignitia-sync examples.game:app
"""

from gevent import monkey

monkey.patch_all()

import itertools  # noqa: E402
from typing import Any  # noqa: E402

from gevent.lock import Semaphore  # noqa: E402

from ignitia_sync import Message, MessageDecodeError, Router, WebSocketConnection, run  # noqa: E402


class Game:
    """A tiny shared board: players and the last move of each."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = Semaphore()
        self.players: dict[int, dict[str, Any]] = {}

    def create_player(self, name: str) -> int:
        with self._lock:
            player_id = next(self._ids)
            self.players[player_id] = {"name": name, "position": None}
            return player_id

    def make_move(self, player_id: int, x: int, y: int) -> bool:
        with self._lock:
            if not (0 <= x < 10 and 0 <= y < 10) or player_id not in self.players:
                return False
            self.players[player_id]["position"] = [x, y]
            return True

    def remove_player(self, player_id: int) -> None:
        with self._lock:
            self.players.pop(player_id, None)

    def state(self) -> str:
        with self._lock:
            return f"{len(self.players)} player(s)"


game = Game()


def parse(message: Message.Text) -> dict[str, Any]:
    data = message.decode_json()
    if not isinstance(data, dict) or data.get("type") not in ("Join", "Move", "Leave"):
        raise MessageDecodeError("expected an object with type Join, Move or Leave")
    if data["type"] == "Join" and not isinstance(data.get("player_name"), str):
        raise MessageDecodeError("Join needs a player_name string")
    if data["type"] == "Move" and not all(isinstance(data.get(k), int) for k in ("x", "y")):
        raise MessageDecodeError("Move needs integer x and y")
    return data


def game_websocket(ws: WebSocketConnection) -> None:
    player_id: int | None = None
    try:
        for message in ws:
            if not isinstance(message, Message.Text):
                continue
            try:
                request = parse(message)
            except MessageDecodeError as exc:
                ws.send_json({"type": "Error", "message": f"Invalid message: {exc}"})
                continue
            if request["type"] == "Join":
                player_id = game.create_player(request["player_name"])
                ws.send_json({"type": "Joined", "player_id": player_id, "game_state": game.state()})
            elif request["type"] == "Move":
                if player_id is None:
                    ws.send_json({"type": "Error", "message": "Join first"})
                    continue
                success = game.make_move(player_id, request["x"], request["y"])
                ws.send_json({"type": "MoveResult", "success": success, "new_state": game.state()})
            else:
                break
    finally:
        if player_id is not None:
            game.remove_player(player_id)


app = Router().websocket("/game", game_websocket)

if __name__ == "__main__":
    run(app)
