"""Registry.disconnect in one process (LocalBackplane): who is closed, with what, and what is refused.

Our server in a thread of its own, python-websockets clients over real sockets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from ignitia_sync import Message, Router
from ignitia_sync.broadcast.registry import Registry
from tests.apps import closed_with, still_open
from tests.conftest import url
from tests.waiting import wait_for


def signed_in(ws):
    """The first message names the user (none: ``-``); each later one is echoed."""
    name = ws.recv().data
    if name != "-":
        ws.registry.identify(ws, name)
    ws.send_text(f"hello {name}")
    for message in ws:
        ws.send(message)


APP = Router().websocket("/ws", signed_in)


@pytest.fixture
def sign_in() -> Iterator[Callable[..., ClientConnection]]:
    """``sign_in(server, name)``: a client identified as ``name`` (``-``: anonymous), closed after the test."""
    with contextlib.ExitStack() as stack:

        def open_one(server, name: str) -> ClientConnection:
            client = stack.enter_context(connect(url(server, "/ws"), open_timeout=10))
            client.send(name)
            assert client.recv(timeout=10) == f"hello {name}"  # identified by now
            return client

        yield open_one


def test_closes_the_identified_connection_with_the_code_and_reason_and_no_other(serve, sign_in):
    server = serve(APP)
    alice, bob, anonymous = sign_in(server, "alice"), sign_in(server, "bob"), sign_in(server, "-")
    assert server.registry.disconnect("alice", 4001, "signed out") == 1  # from this thread: not the server's
    assert closed_with(alice) == (4001, "signed out")
    still_open(bob)
    still_open(anonymous)
    wait_for(lambda: server.registry.get("alice") is None, "alice's connection gone")
    assert server.stats()["close_codes"] == {4001: 1}


def test_the_default_is_1008_and_an_unknown_or_departed_id_closes_nothing(serve, sign_in):
    server = serve(APP)
    alice, bob = sign_in(server, "alice"), sign_in(server, "bob")
    assert server.registry.disconnect("nobody") == 0
    assert server.registry.disconnect("alice") == 1
    assert closed_with(alice) == (1008, "")
    wait_for(lambda: server.registry.get("alice") is None, "alice's connection gone")
    assert server.registry.disconnect("alice") == 0  # gone already: nothing to close, nothing raised
    still_open(bob)


def test_from_the_servers_own_hub(serve, sign_in):
    """A handler revoking another user's session (an admin's "kick"): closed in the same hub."""

    def admin(ws):
        for message in ws:
            if isinstance(message, Message.Text):
                ws.send_text(str(ws.registry.disconnect(message.data, 1000, "kicked")))

    server = serve(Router().websocket("/ws", signed_in).websocket("/admin", admin))
    alice = sign_in(server, "alice")
    with connect(url(server, "/admin"), open_timeout=10) as admin_client:
        admin_client.send("alice")
        assert admin_client.recv(timeout=10) == "1"
        assert closed_with(alice) == (1000, "kicked")


@pytest.mark.parametrize("code", [999, 1002, 1005, 1006, 1011, 1015, 2999, 5000, True, "1008"])
def test_a_code_an_application_may_not_send_is_a_value_error(code):
    with pytest.raises(ValueError, match="cannot end a revoked session"):
        Registry().disconnect("alice", code)


@pytest.mark.parametrize("code", [1000, 1001, 1008, 3000, 4999])
def test_the_codes_it_takes(code):
    assert Registry().disconnect("alice", code, "bye") == 0


@pytest.mark.parametrize(("id", "error"), [
    ("", ValueError), ("#17", ValueError), ("x" * 1025, ValueError), ("\ud800", ValueError), (17, TypeError),
])
def test_what_is_not_an_application_id_is_refused(id, error):
    with pytest.raises(error):
        Registry().disconnect(id)


def test_a_reason_over_123_bytes_is_refused():
    with pytest.raises(ValueError, match="123 bytes"):
        Registry().disconnect("alice", 1008, "é" * 62)
