"""The tutorial's tests (docs/tutorial.md): each step served in process by TestClient."""

import chat1
import chat2
import chat3
import pytest

from ignitia_sync import HandshakeError, Message
from ignitia_sync.testing import TestClient


def test_step1_a_room_hears_its_members_only():
    with TestClient(chat1.app) as client:
        alice = client.connect("/ws/room/lobby?name=alice")
        bob = client.connect("/ws/room/lobby?name=bob")
        carol = client.connect("/ws/room/kitchen?name=carol")
        alice.send_text("hi")
        assert alice.recv(timeout=1) == bob.recv(timeout=1) == Message.text("alice: hi")
        carol.expect_nothing(0.1)  # AssertionError if a message comes


def test_step2_the_name_comes_from_the_session_and_guards_refuse_before_the_101():
    http = chat2.app.test_client()  # Flask's test client: its cookies go with every upgrade
    with TestClient(chat2.app, http_client=http) as client:
        with pytest.raises(HandshakeError) as refused:
            client.connect("/ws/room/lobby")
        assert refused.value.status == 401
        http.post("/signin", data={"name": "alice"})
        with pytest.raises(HandshakeError) as refused:
            client.connect("/ws/room/lobby", headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        ws = client.connect("/ws/room/lobby", headers={"Origin": "http://localhost"})
        ws.send_json({"type": "message", "text": "hi", "user": "mallory"})  # "user" is ignored
        event = ws.recv_json(timeout=1)
        assert (event["type"], event["user"], event["text"]) == ("message", "alice", "hi")


def test_step3_history_presence_and_the_rate_limit():
    http = chat3.app.test_client()
    with TestClient(chat3.app, http_client=http) as client:
        assert http.post("/", data={"name": "alice", "room": "lobby"}).status_code == 302
        assert http.get("/room/lobby").status_code == 200
        alice = client.connect("/ws/room/lobby")
        assert alice.recv_json(timeout=1) == {"type": "history", "messages": []}
        assert alice.recv_json(timeout=1) == {"type": "presence", "users": ["alice"]}
        for n in range(9):  # a burst of 8 passes, the 9th is refused
            alice.send_json({"type": "message", "text": f"m{n}"})
        received = [alice.recv_json(timeout=1) for _ in range(9)]
        assert [event["text"] for event in received[:8]] == [f"m{n}" for n in range(8)]
        assert received[8] == {"type": "error", "text": "Slow down: that message was not sent."}
        second_tab = client.connect("/ws/room/lobby")
        history = second_tab.recv_json(timeout=1)
        assert [event["text"] for event in history["messages"]] == [f"m{n}" for n in range(8)]
        assert second_tab.recv_json(timeout=1) == {"type": "presence", "users": ["alice"]}
