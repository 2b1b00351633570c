"""docs/rooms-protocol.md: its full exchange is what a server says, frame for frame, and its limits are the code's.

The exchange's ``→`` lines are sent by an independent client (websockets), its ``←`` lines
must come back as they are written (the page's epochs stand for the server's random ones);
between the parts, what the narrative says happens: two broadcasts while the client is away,
then a restart (a new server: a new epoch).
"""

from __future__ import annotations

import pathlib
import re

from websockets.sync.client import connect

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.broadcast.positions import MAX_EPOCH_LENGTH
from ignitia_sync.broadcast.rooms_protocol import MAX_RESUMED_ROOMS, SUBPROTOCOL
from tests.conftest import url
from tests.waiting import wait_for

PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "rooms-protocol.md"
TEXT = PAGE.read_text(encoding="utf-8")


def exchange() -> list[list[tuple[str, str]]]:
    """The parts of the page's exchange (split at its narrative lines): (direction, frame) each."""
    block = TEXT.split("## A full exchange", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    parts: list[list[tuple[str, str]]] = [[]]
    for line in block.splitlines():
        if line.startswith(("→ ", "← ")):
            parts[-1].append((line[0], line[2:]))
        elif line.strip().startswith("(") and parts[-1]:
            parts.append([])
    return [part for part in parts if part]


def chat(ws: WebSocketConnection, room: str) -> None:
    ws.join(room)
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.registry.broadcast(message, room=room)


def app() -> Router:
    return Router().websocket("/chat/:room", chat, subprotocols=[SUBPROTOCOL])


def play(server, part: list[tuple[str, str]], epochs: dict[str, str]) -> None:
    """Send the part's → frames, expect its ← frames verbatim, the page's epochs mapped to the server's."""
    with connect(url(server, "/chat/lobby"), subprotocols=[SUBPROTOCOL], open_timeout=10) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        for direction, frame in part:
            for page_epoch, real in epochs.items():
                frame = frame.replace(page_epoch, real)
            if direction == "→":
                ws.send(frame)
                continue
            got = ws.recv(timeout=5)
            for page_epoch in re.findall(r'"epoch":"(\w+)"', frame):
                if page_epoch not in epochs:  # the first time the page names it: the server's new epoch
                    epochs[page_epoch] = re.search(r'"epoch":"(\w+)"', got).group(1)
                    frame = frame.replace(page_epoch, epochs[page_epoch])
            assert got == frame


def test_the_full_exchange_is_what_the_server_says(serve):
    first, after_the_drop, after_the_restart = exchange()
    epochs: dict[str, str] = {}
    server = serve(app())
    play(server, first, epochs)
    for text in ("two", "three"):
        server.registry.broadcast_threadsafe(Message.text(text), room="lobby")
    wait_for(lambda: server.registry.position("lobby").offset == 3, "the two broadcasts")
    play(server, after_the_drop, epochs)
    restarted = serve(app())  # another process's log, as after a restart
    play(restarted, after_the_restart, epochs)
    assert len(set(epochs.values())) == 2


def test_the_limits_on_the_page_are_the_codes():
    assert f"at most {MAX_RESUMED_ROOMS} rooms" in TEXT
    assert f"1 to {MAX_EPOCH_LENGTH} characters" in TEXT
    assert f'`{SUBPROTOCOL}`' in TEXT
