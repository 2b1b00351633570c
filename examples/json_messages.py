"""The guide's "Working with JSON Messages": game moves in, results out, errors explained.

Run: python examples/json_messages.py [--port N]   or   ignitia-sync examples.json_messages:app
"""

from gevent import monkey

monkey.patch_all()

from dataclasses import dataclass  # noqa: E402

from ignitia_sync import Message, MessageDecodeError, Router, WebSocketConnection, run  # noqa: E402


@dataclass
class GameMove:
    player_id: int
    x: int
    y: int
    piece: str


@dataclass
class MoveResult:
    accepted: bool
    player_id: int
    position: list[int]
    piece: str


def parse_move(message: Message.Text) -> GameMove:
    data = message.decode_json()
    try:
        move = GameMove(**data)
    except TypeError as exc:
        raise MessageDecodeError(f"not a GameMove: {exc}") from None
    if not all(isinstance(v, int) for v in (move.player_id, move.x, move.y)):
        raise MessageDecodeError("player_id, x and y must be integers")
    return move


def process_move(move: GameMove) -> MoveResult:
    inside = 0 <= move.x < 8 and 0 <= move.y < 8
    return MoveResult(inside, move.player_id, [move.x, move.y], move.piece)


def handle_game_websocket(ws: WebSocketConnection) -> None:
    for message in ws:
        if isinstance(message, Message.Text):
            try:
                move = parse_move(message)
            except MessageDecodeError as exc:
                ws.send_text(f"Invalid JSON: {exc}")
                continue
            ws.send_json(process_move(move))


app = Router().websocket("/game", handle_game_websocket)

if __name__ == "__main__":
    run(app)
