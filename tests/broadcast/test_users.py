"""Connections have users: the registry's user index (set_user, AuthInfo, connections_of) and disconnect.

Our server in a thread of its own, python-websockets clients over real sockets; one process
(LocalBackplane). The handler takes commands: ``user NAME`` (``set_user``; ``user`` alone:
no user), ``id NAME`` (``identify``); it answers each with the connection's user and id, and
echoes anything else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from ignitia_sync import AuthInfo, AuthMiddleware, Message, Router
from ignitia_sync.broadcast.registry import MAX_ID_LENGTH, LocalBackplane, Registry
from tests.apps import closed_with, still_open
from tests.conftest import url
from tests.waiting import wait_for


def member(ws):
    ws.send_text(f"user={ws.user_id}")
    for message in ws:
        if not isinstance(message, Message.Text):
            continue
        verb, _, name = message.data.partition(" ")
        if verb == "user":
            ws.registry.set_user(ws, name or None)
        elif verb == "id":
            ws.registry.identify(ws, name)
        else:
            ws.send(message)
            continue
        ws.send_text(f"user={ws.user_id} id={ws.id}")


auth = AuthMiddleware(lambda token: AuthInfo(token) if token else None)
APP = Router().websocket("/ws", member).websocket("/auth", member, middleware=[auth])


@pytest.fixture
def client() -> Iterator[Callable[..., ClientConnection]]:
    """``client(server, path="/ws")``: a connected client past its greeting, closed after the test."""
    with contextlib.ExitStack() as stack:

        def open_one(server, path: str = "/ws") -> ClientConnection:
            ws = stack.enter_context(connect(url(server, path), open_timeout=10))
            assert ws.recv(timeout=10).startswith("user=")  # registered by now
            return ws

        yield open_one


def ask(ws: ClientConnection, command: str) -> str:
    ws.send(command)
    return ws.recv(timeout=10)


def the_connection(server, client: ClientConnection):
    """The server side of ``client`` (matched by the client's local port)."""
    port = client.local_address[1]
    (ws,) = [ws for ws in server.registry if ws.remote_address[1] == port]
    return ws


def test_two_connections_of_one_user_are_both_in_the_index(serve, client):
    server = serve(APP)
    first, second, other = client(server), client(server), client(server)
    assert ask(first, "user alice").startswith("user=alice id=#")
    assert ask(second, "user alice").startswith("user=alice id=#")
    assert ask(other, "user bob").startswith("user=bob id=#")
    alices = server.registry.connections_of("alice")
    assert isinstance(alices, frozenset)
    assert alices == {the_connection(server, first), the_connection(server, second)}
    assert {ws.user_id for ws in alices} == {"alice"}
    assert server.registry.connections_of("bob") == {the_connection(server, other)}
    assert server.registry.connections_of("carol") == frozenset()


def test_authinfo_makes_the_user_without_a_call(serve, client):
    server = serve(APP)
    tab = client(server, "/auth?token=alice")
    assert server.registry.connections_of("alice") == {the_connection(server, tab)}
    assert ask(tab, "again") == "again"
    assert the_connection(server, tab).user_id == "alice"
    assert ask(tab, "user alice2").startswith("user=alice2 ")  # set_user moves it
    assert server.registry.connections_of("alice") == frozenset()
    assert len(server.registry.connections_of("alice2")) == 1


def test_set_user_moves_and_none_removes(serve, client):
    server = serve(APP)
    tab = client(server)
    ask(tab, "user alice")
    ask(tab, "user bob")
    assert server.registry.connections_of("alice") == frozenset()
    assert len(server.registry.connections_of("bob")) == 1
    assert ask(tab, "user").startswith("user=None ")
    assert server.registry.connections_of("bob") == frozenset()
    assert server.registry._users == {}  # no empty entry is left behind


def test_a_closed_connection_leaves_the_index_and_keeps_its_user_id(serve, client):
    server = serve(APP)
    first, second = client(server), client(server)
    ask(first, "user alice")
    ask(second, "user alice")
    gone = the_connection(server, first)
    first.close()
    wait_for(lambda: len(server.registry.connections_of("alice")) == 1, "the closed tab out of the index")
    assert gone.user_id == "alice"  # whose connection it was
    second.close()
    wait_for(lambda: server.registry.connections_of("alice") == frozenset(), "the last tab out of the index")
    assert server.registry._users == {}


def test_connections_without_a_user_cost_nothing_in_the_index(serve, client):
    server = serve(APP)
    tabs = [client(server) for _ in range(3)]
    wait_for(lambda: len(server.registry) == 3, "three connections")
    assert server.registry._users == {}
    assert {ws.user_id for ws in server.registry} == {None}
    assert ask(tabs[0], "plain") == "plain"


def test_disconnect_closes_every_connection_of_the_user_and_the_identified_one(serve, client):
    server = serve(APP)
    tabs = [client(server), client(server), client(server, "/auth?token=alice")]
    for tab in tabs[:2]:
        ask(tab, "user alice")
    identified = client(server)
    ask(identified, "id alice")  # the old meaning of the id: kept
    bob, anonymous = client(server, "/auth?token=bob"), client(server)
    assert server.registry.disconnect("alice", 4001, "banned") == 4
    assert [closed_with(ws) for ws in [*tabs, identified]] == [(4001, "banned")] * 4
    still_open(bob)
    still_open(anonymous)
    wait_for(lambda: server.registry.connections_of("alice") == frozenset(), "alice's connections gone")
    assert server.registry.disconnect("alice") == 0  # nothing left: nothing closed, nothing raised


def test_a_connection_both_identified_and_of_the_user_counts_once(serve, client):
    server = serve(APP)
    tab = client(server)
    ask(tab, "user alice")
    ask(tab, "id alice")
    assert server.registry.disconnect("alice", 1000, "bye") == 1
    assert closed_with(tab) == (1000, "bye")


def test_a_revocation_from_another_process_closes_the_users_connections(serve, client):
    """What the backplane hands the registry for an ``X`` envelope: ``on_direct(id, Close)``."""
    server = serve(APP)
    tabs = [client(server), client(server)]
    for tab in tabs:
        ask(tab, "user alice")
    bob = client(server, "/auth?token=bob")
    server.registry.call_threadsafe(server.registry._receive_direct, "alice", Message.close_with_reason(4003, "pw"))
    assert [closed_with(tab) for tab in tabs] == [(4003, "pw")] * 2
    still_open(bob)


@pytest.mark.parametrize(
    ("user_id", "error", "match"),
    [
        ("", ValueError, "user ids must be 1-"),
        ("#17", ValueError, "not start with '#'"),
        ("x" * (MAX_ID_LENGTH + 1), ValueError, "user ids must be 1-"),
        ("\ud800", ValueError, "not valid Unicode text"),
        (42, TypeError, "a user id is a str, not int"),
    ],
)
def test_a_bad_user_id_is_refused(serve, client, user_id, error, match):
    server = serve(APP)
    client(server)
    (ws,) = server.registry
    with pytest.raises(error, match=match):
        server.registry.set_user(ws, user_id)
    assert ws.user_id is None and server.registry._users == {}


def test_the_longest_user_id_is_accepted(serve, client):
    server = serve(APP)
    tab = client(server)
    longest = "x" * MAX_ID_LENGTH
    ask(tab, f"user {longest}")
    assert len(server.registry.connections_of(longest)) == 1


def test_set_user_refuses_a_connection_that_is_not_registered(serve, client):
    server = serve(APP)
    tab = client(server)
    ws = the_connection(server, tab)
    tab.close()
    wait_for(lambda: ws not in server.registry, "the connection gone")
    with pytest.raises(ValueError, match="is not registered"):
        server.registry.set_user(ws, "alice")
    assert server.registry.connections_of("alice") == frozenset()


@pytest.mark.expect_errors  # the server logs why it could not register the connection
def test_an_authinfo_with_a_bad_user_id_is_not_registered(serve):
    bad = AuthMiddleware(lambda token: AuthInfo(token if token != "int" else 42))  # type: ignore[arg-type]
    server = serve(Router().websocket("/bad", member, middleware=[bad]))
    for token in ("%23admin", "int"):  # "#admin", and an int
        with connect(url(server, f"/bad?token={token}"), open_timeout=10) as ws:
            assert closed_with(ws)[0] == 1011
    assert len(server.registry) == 0 and server.registry._users == {}


def test_start_afresh_forgets_the_users(serve, client):
    server = serve(APP)
    ask(client(server), "user alice")
    registry: Registry = server.registry
    registry._start_afresh(LocalBackplane())
    assert registry.connections_of("alice") == frozenset()
