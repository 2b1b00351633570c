import pytest

from ignitia_sync import HandshakeError, Message
from ignitia_sync.testing import TestClient


def test_a_room_relays_messages():
    from chat import app

    with TestClient(app) as client:  # leaving the block closes everything and stops the server
        alice = client.connect("/chat/lobby?name=alice", headers={"Origin": "https://myapp.example"})
        bob = client.connect("/chat/lobby?name=bob")
        carol = client.connect("/chat/kitchen?name=carol")
        alice.send_text("hi")
        assert alice.recv(timeout=1) == bob.recv(timeout=1) == Message.text("alice: hi")
        carol.expect_nothing(0.1)  # AssertionError if a message comes
        bob.close_and_wait()  # close() alone does not wait for the closing handshake
        assert client.server.stats()["open_connections"] == 2


def test_a_refusal_carries_status_body_and_headers():
    from chat import app

    with TestClient(app) as client:
        with pytest.raises(HandshakeError) as refused:
            client.connect("/admin")
        assert (refused.value.status, refused.value.body) == (401, "missing or invalid token\n")
        ws = client.connect("/admin", headers={"Authorization": "Bearer s3cret-token"})
        assert ws.recv(timeout=1) == Message.text("1 connections")


def test_with_the_fixture(websocket_client):  # the fixture serves what `websocket_app` returns
    ws = websocket_client.connect("/chat/lobby?name=fixture")
    ws.send_text("hello")
    assert ws.recv(timeout=1) == Message.text("fixture: hello")
