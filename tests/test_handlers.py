"""The three handler kinds, run by a real server (in process with TestClient, or on a port)."""

from __future__ import annotations

import gevent

from ignitia_sync import (
    Message,
    Router,
    websocket_batch_handler,
    websocket_handler,
    websocket_message_handler,
)
from ignitia_sync.testing import TestClient
from tests.waiting import wait_for
from tests.wire import Peer, frame


def test_plain_handler_gets_path_params():
    def greet(ws, user_id):
        ws.send_text(f"hello {user_id} {ws.request.path_params['user_id']}")

    with TestClient(Router().websocket("/chat/:user_id", websocket_handler(greet))) as client:
        assert client.connect("/chat/alice").recv(timeout=5) == Message.text("hello alice alice")


def test_message_handler_is_called_per_message_then_ends_on_close():
    calls: list[Message] = []

    def on_message(ws, message, room):
        calls.append(message)
        if isinstance(message, Message.Text):
            ws.send_text(f"{room}:{message.data.upper()}")

    with TestClient(Router().websocket("/r/:room", websocket_message_handler(on_message))) as client:
        with client.connect("/r/lobby") as ws:
            ws.send_text("a")
            ws.send_text("b")
            assert [ws.recv(timeout=5), ws.recv(timeout=5)] == [Message.text("lobby:A"), Message.text("lobby:B")]
        wait_for(lambda: calls and isinstance(calls[-1], Message.Close), "the Close handed to the handler")


def test_batch_handler_fills_batches_and_flushes_on_timeout(serve):
    sizes: list[int] = []

    def on_batch(ws, messages):
        sizes.append(len(messages))
        ws.send_batch([Message.text(m.data.upper()) for m in messages])

    server = serve(Router().websocket("/b", websocket_batch_handler(on_batch, 10, 200)))
    peer = Peer(server.address)
    peer.upgrade("/b")
    peer.send(b"".join(frame(0x1, f"m{i}".encode()) for i in range(25)))
    replies = [peer.read_frame()[1] for _ in range(25)]
    assert replies == [f"M{i}".encode() for i in range(25)]
    assert sizes == [10, 10, 5]  # two full batches, then the timeout flushed five
    peer.send(frame(0x9, b"ping"))  # not batched, answered at once
    assert peer.read_frame()[:2] == (0xA, b"ping")


def test_batch_handler_delivers_the_partial_batch_when_the_peer_closes(serve):
    batches: list[list[str]] = []

    def on_batch(ws, messages):
        batches.append([m.data for m in messages])

    server = serve(Router().websocket("/b", websocket_batch_handler(on_batch, 100, 5000)))
    peer = Peer(server.address)
    peer.upgrade("/b")
    peer.send(frame(0x1, b"one") + frame(0x1, b"two") + frame(0x8, b"\x03\xe8"))
    assert peer.read_close()[0] == 1000
    wait_for(lambda: batches, "the batch flushed by the Close", timeout=3)  # far less than the 5 s batch timeout
    assert batches == [["one", "two"]]


def test_handlers_may_send_from_other_greenlets():
    def fan(ws):
        workers = [gevent.spawn(ws.send_text, f"w{i}" * 5000) for i in range(10)]
        gevent.joinall(workers)

    with TestClient(Router().websocket("/fan", fan)) as client:
        ws = client.connect("/fan")
        got = sorted(ws.recv(timeout=5).data for _ in range(10))
    assert got == sorted(f"w{i}" * 5000 for i in range(10))
