"""Application ids and room names are checked once, at the Registry API, the same under every backplane.

A client's JSON can carry ``"\\ud800"``: ``json.loads`` makes a lone surrogate of it, which no
UTF-8 wire (Redis, a log line) can carry. Such a name is refused with ValueError when it is
given, never later in a publisher shared by every connection of the process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from ignitia_sync import Message, Router
from tests.conftest import url
from tests.redis_server import RedisServer
from tests.waiting import wait_for

BAD = "\ud800"  # what json.loads('"\\ud800"') returns
OPS = ["identify", "join", "leave", "broadcast", "send_to"]


def names(ws: Any) -> None:
    """Runs what the client asks with the name it gives; answers "ok" or the ValueError's text."""
    registry = ws.registry
    calls: dict[str, Callable[[str], object]] = {
        "identify": lambda name: registry.identify(ws, name),
        "join": ws.join,
        "leave": ws.leave,
        "broadcast": lambda name: registry.broadcast(Message.text(f"to {name}"), room=name),
        "send_to": lambda name: registry.send_to(name, Message.text("direct")),
    }
    while True:
        request = ws.recv_json()
        try:
            calls[request["op"]](request["name"])
        except ValueError as exc:
            ws.send_json({"error": str(exc)})
        else:
            ws.send_json({"ok": request["op"]})


def member(ws: Any, room: str) -> None:
    ws.join(room)
    ws.send_text("joined")
    for _message in ws:
        pass


ROUTER = Router().websocket("/names", names).websocket("/member/:room", member)


def ask(ws: ClientConnection, op: str, name: str) -> dict[str, str]:
    """The answer to one call (what the call itself sent this connection is skipped)."""
    ws.send(json.dumps({"op": op, "name": name}))  # ensure_ascii: the surrogate travels as \ud800
    while not (text := str(ws.recv(timeout=10))).startswith("{"):
        pass
    answer: dict[str, str] = json.loads(text)
    return answer


def test_a_lone_surrogate_is_refused_by_every_call_that_takes_a_name_without_redis(serve):
    server = serve(ROUTER)
    with connect(url(server, "/names")) as ws:
        for op in OPS:
            answer = ask(ws, op, BAD)
            assert "error" in answer, (op, answer)
            assert "lone surrogate at index 0" in answer["error"], answer
        assert ask(ws, "identify", f"x{BAD}y")["error"].endswith("at index 1 (UTF-8 cannot encode it)")
        # Nothing was half done: the connection goes on, and good names work.
        for op in OPS:
            assert ask(ws, op, "caf\u00e9") == {"ok": op}
        assert server.registry.get("caf\u00e9") is not None


def test_a_lone_surrogate_id_does_not_stop_the_process_from_publishing_through_redis(
    serve, redis_server: RedisServer
):
    here = serve(ROUTER, backplane=redis_server.url)
    there = serve(ROUTER, backplane=redis_server.url)
    with connect(url(there, "/member/r")) as listener, connect(url(here, "/names")) as ws:
        assert listener.recv(timeout=10) == "joined"
        wait_for(lambda: redis_server.subscribers("ignitia:room:r") >= 1, "the member's process to subscribe")
        for op in OPS:
            assert "lone surrogate" in ask(ws, op, BAD).get("error", ""), op
        assert ask(ws, "broadcast", "r") == {"ok": "broadcast"}
        assert listener.recv(timeout=5) == "to r"  # the other process still hears this one
        assert here.stats()["backplane"]["dropped"] == 0


@pytest.mark.parametrize("op", OPS)
def test_the_registry_refuses_a_name_that_is_not_a_str(op):
    from ignitia_sync.broadcast.registry import _check_name

    with pytest.raises(TypeError, match="is a str, not bytes"):
        _check_name(op, b"room")  # type: ignore[arg-type]
