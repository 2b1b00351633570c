"""The three handler kinds, run by a real server."""

from __future__ import annotations

import time

import gevent
from websockets.sync.client import connect

from ignitia_sync import (
    Message,
    Router,
    websocket_batch_handler,
    websocket_handler,
    websocket_message_handler,
)
from tests.conftest import url
from tests.wire import Peer, frame


def test_plain_handler_gets_path_params(serve):
    def greet(ws, user_id):
        ws.send_text(f"hello {user_id} {ws.request.path_params['user_id']}")

    server = serve(Router().websocket("/chat/:user_id", websocket_handler(greet)))
    with connect(url(server, "/chat/alice")) as client:
        assert client.recv() == "hello alice alice"


def test_message_handler_is_called_per_message_then_ends_on_close(serve):
    calls: list[Message] = []

    def on_message(ws, message, room):
        calls.append(message)
        if isinstance(message, Message.Text):
            ws.send_text(f"{room}:{message.data.upper()}")

    server = serve(Router().websocket("/r/:room", websocket_message_handler(on_message)))
    with connect(url(server, "/r/lobby")) as client:
        client.send("a")
        client.send("b")
        assert [client.recv(), client.recv()] == ["lobby:A", "lobby:B"]
    deadline = time.monotonic() + 5
    while not (calls and isinstance(calls[-1], Message.Close)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert isinstance(calls[-1], Message.Close)


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
    deadline = time.monotonic() + 3  # far less than the 5 s batch timeout
    while not batches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert batches == [["one", "two"]]


def test_handlers_may_send_from_other_greenlets(serve):
    def fan(ws):
        workers = [gevent.spawn(ws.send_text, f"w{i}" * 5000) for i in range(10)]
        gevent.joinall(workers)

    server = serve(Router().websocket("/fan", fan))
    with connect(url(server, "/fan")) as client:
        got = sorted(client.recv() for _ in range(10))
    assert got == sorted(f"w{i}" * 5000 for i in range(10))
