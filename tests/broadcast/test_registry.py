"""The registry: membership, rooms, broadcast, cleanup, slow consumers, calls from threads."""

from __future__ import annotations

import socket
import struct
import threading

import gevent
import pytest
from websockets.sync.client import connect

from ignitia_sync import ConnectionClosed, Message, Router, WebSocketConnection
from ignitia_sync.testing import TestClient
from tests.conftest import url
from tests.waiting import wait_for
from tests.wire import Peer, frame


def room_chat(ws: WebSocketConnection, room: str) -> None:
    ws.join(room)
    ws.send_text(f"joined {room} as {ws.id}")
    for message in ws:
        if isinstance(message, Message.Text):
            if message.data == "leave":
                ws.leave(room)
                ws.send_text("left")
            elif message.data == "crash":
                raise RuntimeError("handler crash")
            else:
                ws.registry.broadcast(message, room=room, exclude=ws)


ROOMS = Router().websocket("/room/:room", room_chat)


def test_broadcast_reaches_the_room_but_not_the_sender_or_other_rooms():
    with TestClient(ROOMS) as client:
        a1, a2, b1 = (client.connect(path) for path in ("/room/a", "/room/a", "/room/b"))
        for ws in (a1, a2, b1):
            ws.recv(timeout=5)
        registry = client.server.registry
        assert len(registry) == 3 and registry.rooms == {"a", "b"}
        a1.send_text("hello a")
        assert a2.recv(timeout=5) == Message.text("hello a")
        a1.expect_nothing(0.3)
        b1.expect_nothing(0.3)
        a2.send_text("leave")
        assert a2.recv(timeout=5) == Message.text("left")
        assert len(registry.members("a")) == 1
        b1.send_text("only me")  # a room of one: nobody else gets it
        a1.send_text("nobody")
        a2.expect_nothing(0.3)


def test_identify_get_and_iteration(serve):
    server = serve(ROOMS)
    with connect(url(server, "/room/x")) as client:
        client.recv()
        ws = next(iter(server.registry))
        registry = server.registry
        registry.call_threadsafe(registry.identify, ws, "alice")
        wait_for(lambda: registry.get("alice") is ws)
        assert ws.id == "alice" and ws.rooms == {"x"}
        assert list(registry) == [ws] and ws in registry


@pytest.mark.expect_errors  # the test makes it raise
def test_every_kind_of_disconnect_leaves_the_registry_and_its_rooms(serve):
    server = serve(ROOMS)
    registry = server.registry
    with connect(url(server, "/room/r")) as client:  # handler returns after the peer's close
        client.recv()
        wait_for(lambda: len(registry) == 1)
    wait_for(lambda: len(registry) == 0 and not registry.rooms)
    with connect(url(server, "/room/r")) as client:  # handler crash
        client.recv()
        client.send("crash")
        wait_for(lambda: len(registry) == 0 and not registry.rooms)
    peer = Peer(server.address)  # peer vanishes with a reset
    peer.upgrade("/room/r")
    wait_for(lambda: len(registry) == 1)
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    wait_for(lambda: len(registry) == 0 and not registry.rooms)
    with connect(url(server, "/room/r")) as client:  # shutdown
        client.recv()
        server.stop(timeout=5)
        assert len(registry) == 0 and not registry.rooms


def test_five_hundred_receivers_get_every_one_of_two_hundred_broadcasts_in_order(serve):
    def listener(ws: WebSocketConnection) -> None:
        for message in ws:
            if isinstance(message, Message.Text) and message.data == "go":
                for i in range(200):
                    ws.registry.broadcast(Message.text(f"{i:03d}" + "x" * 60), exclude=ws)
                    gevent.sleep(0)

    server = serve(Router().websocket("/fan", listener))
    peers = []
    for _ in range(500):
        peer = Peer(server.address)
        peer.upgrade("/fan")
        peers.append(peer)
    wait_for(lambda: len(server.registry) == 500)
    sender = Peer(server.address)
    sender.upgrade("/fan")
    wait_for(lambda: len(server.registry) == 501)
    sender.send(frame(0x1, b"go"))
    expected = [(f"{i:03d}" + "x" * 60).encode() for i in range(200)]
    for peer in peers:
        assert [peer.read_frame()[1] for _ in range(200)] == expected
        peer.close()


def test_slow_consumers_are_closed_with_1008_and_the_others_lose_nothing(serve):
    count, size = 200, 64 * 1024
    done = threading.Event()

    def hub(ws: WebSocketConnection) -> None:
        for message in ws:
            if isinstance(message, Message.Text) and message.data == "go":
                for i in range(count):
                    ws.registry.broadcast(Message.binary(struct.pack("!I", i) + bytes(size - 4)), exclude=ws)
                    gevent.sleep(0.002)
                done.set()

    server = serve(Router().websocket("/hub", hub), outbox_limit=1 << 20)
    slow = []
    for _ in range(5):
        peer = Peer(server.address, timeout=60)  # default buffers: a tiny window would crawl
        peer.upgrade("/hub")
        slow.append(peer)
    healthy = [Peer(server.address, timeout=60) for _ in range(50)]
    for peer in healthy:
        peer.upgrade("/hub")
    received: dict[int, list[int]] = {}

    def read_all(n: int, peer: Peer) -> None:
        received[n] = [struct.unpack("!I", peer.read_frame()[1][:4])[0] for _ in range(count)]

    readers = [threading.Thread(target=read_all, args=(n, p)) for n, p in enumerate(healthy)]
    for reader in readers:
        reader.start()
    wait_for(lambda: len(server.registry) == 55)
    sender = Peer(server.address)
    sender.upgrade("/hub")
    sender.send(frame(0x1, b"go"))
    assert done.wait(60)
    closes: dict[int, tuple[list[int], bytes]] = {}

    def read_until_close(n: int, peer: Peer) -> None:
        got = []
        while True:
            opcode, payload, _ = peer.read_frame()
            if opcode == 8:
                closes[n] = (got, payload)
                return
            got.append(struct.unpack("!I", payload[:4])[0])

    # The slow ones read again (within close_timeout): what was already in flight, then 1008.
    late = [threading.Thread(target=read_until_close, args=(n, p)) for n, p in enumerate(slow)]
    for thread in late:
        thread.start()
    for thread in late + readers:
        thread.join(60)
    assert all(received[n] == list(range(count)) for n in range(50))
    assert len(closes) == 5
    for got, payload in closes.values():
        assert payload == struct.pack("!H", 1008) + b"slow consumer"
        assert got == list(range(len(got))) and len(got) < count


def test_send_nowait_queues_in_order_and_refuses_after_close(serve):
    outcome: list[str] = []

    def queued(ws: WebSocketConnection) -> None:
        for i in range(50):
            ws.send_nowait(Message.text(f"q{i}"))
        ws.close()
        try:
            ws.send_nowait(Message.text("late"))
        except ConnectionClosed:
            outcome.append("refused")

    server = serve(Router().websocket("/q", queued))
    peer = Peer(server.address)
    peer.upgrade("/q")
    assert [peer.read_frame()[1] for _ in range(50)] == [f"q{i}".encode() for i in range(50)]
    assert peer.read_close()[0] == 1000  # the Close comes after everything queued
    wait_for(lambda: outcome == ["refused"])


def test_broadcast_from_a_real_thread_and_to_compressed_peers(serve):
    server = serve(ROOMS)
    with connect(url(server, "/room/t"), compression=None) as plain, connect(url(server, "/room/t")) as deflated:
        plain.recv()
        deflated.recv()
        worker = threading.Thread(
            target=server.registry.broadcast_threadsafe, args=(Message.text("from a thread"),), kwargs={"room": "t"}
        )
        worker.start()
        worker.join()
        assert plain.recv(timeout=5) == "from a thread"
        assert deflated.recv(timeout=5) == "from a thread"


def test_broadcast_refuses_control_messages(serve):
    server = serve(ROOMS)
    with pytest.raises(TypeError):
        server.registry.broadcast(Message.ping(b"x"))
