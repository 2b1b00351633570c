"""host.inspect_connections(): one ConnectionInfo per open connection, against a real server.

The server runs in a thread of its own; the test calls ``inspect_connections()`` from its own
thread (not the server's), as a monitoring view would. Clients are python-websockets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from ignitia_sync import Message, Router
from ignitia_sync.hosting.inspection import ConnectionInfo
from tests.conftest import url
from tests.waiting import wait_for


def member(ws, room):
    """Joins ``room``; "id NAME" identifies it; every message is answered with "ok"."""
    ws.join(room)
    ws.send_text("joined")
    for message in ws:
        if isinstance(message, Message.Text):
            if message.data.startswith("id "):
                ws.registry.identify(ws, message.data[3:])
            ws.send_text("ok")


def quiet(ws):
    ws.send_text("here")
    for _ in ws:
        pass


APP = Router().websocket("/rooms/:room", member).websocket("/quiet", quiet)


@pytest.fixture
def clients() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def open_client(stack: contextlib.ExitStack, server, path: str, greeting: str) -> ClientConnection:
    client = stack.enter_context(connect(url(server, path), open_timeout=10))
    assert client.recv(timeout=10) == greeting
    return client


def ask(client: ClientConnection, text: str) -> None:
    client.send(text)
    assert client.recv(timeout=10) == "ok"


def test_one_record_per_open_connection_with_what_the_server_knows(serve, clients):
    server = serve(APP)
    assert server.inspect_connections() == []
    lobby = open_client(clients, server, "/rooms/lobby", "joined")
    ask(lobby, "id alice")
    ask(lobby, "again")
    games = open_client(clients, server, "/rooms/games", "joined")
    silent = open_client(clients, server, "/quiet", "here")

    records = server.inspect_connections()
    assert all(isinstance(record, ConnectionInfo) for record in records)
    by_route = {record.route: record for record in records}
    assert set(by_route) == {"/rooms/:room", "/quiet"} and len(records) == 3
    alice = next(record for record in records if record.user_id == "alice")
    games_record = next(record for record in records if record.rooms == frozenset({"games"}))
    assert (alice.route, alice.rooms, alice.messages_in, alice.messages_out) == (
        "/rooms/:room", frozenset({"lobby"}), 2, 3
    )
    assert (games_record.user_id, games_record.messages_in, games_record.messages_out) == (None, 0, 1)
    quiet_record = by_route["/quiet"]
    assert (quiet_record.rooms, quiet_record.user_id) == (frozenset(), None)
    for record in records:
        assert record.peer == "127.0.0.1" and record.state == "open" and record.outbox_bytes == 0
        assert record.id.startswith("#") and record.age >= 0
    assert len({record.id for record in records}) == 3  # one id per connection
    assert [record.age for record in records] == sorted((record.age for record in records), reverse=True)
    assert records[0] == alice  # the oldest first
    json.dumps([record.as_json() for record in records])  # ready for a JSON endpoint

    with pytest.raises(dataclasses.FrozenInstanceError):
        alice.user_id = "mallory"  # type: ignore[misc]

    silent.close()
    games.close()
    wait_for(lambda: len(server.inspect_connections()) == 1, "two connections gone")
    (left,) = server.inspect_connections()
    assert left.id == alice.id and left.user_id == "alice" and left.age >= alice.age


def test_the_id_is_the_connections_own_before_and_after_identify(serve, clients):
    server = serve(APP)
    client = open_client(clients, server, "/rooms/lobby", "joined")
    (before,) = server.inspect_connections()
    assert before.user_id is None
    ask(client, "id bob")
    (after,) = server.inspect_connections()
    assert after.id == before.id and after.user_id == "bob"  # the record's id does not change with identify
    assert after.messages_in == 1 and after.messages_out == 2


def test_rooms_and_counters_follow_the_connection(serve, clients):
    """A snapshot is taken when asked: later joins and messages show in the next one."""

    def mover(ws):
        for message in ws:
            if isinstance(message, Message.Text):
                ws.join(message.data)
                ws.send_text("ok")

    server = serve(Router().websocket("/move", mover))
    client = clients.enter_context(connect(url(server, "/move"), open_timeout=10))
    wait_for(lambda: len(server.inspect_connections()) == 1, "the connection registered")
    assert server.inspect_connections()[0].rooms == frozenset()
    for room in ("a", "b", "c"):
        ask(client, room)
    (record,) = server.inspect_connections()
    assert record.rooms == frozenset({"a", "b", "c"}) and (record.messages_in, record.messages_out) == (3, 3)
