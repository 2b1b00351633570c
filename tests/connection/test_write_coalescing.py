"""Write coalescing: replies sent while more input waits leave together, in order, once.

``Transport.send`` queues a small frame the handler sends while its inbox still holds
messages, and the queue leaves in one system call when the handler next waits (the hub's
turn) or anything else is sent. These tests drive a real Transport over a socket pair in a
thread with its own hub (the scenario's greenlet is the handler: the inbox's reader), and
real servers and clients end to end, also in processes that are not monkey-patched.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.socket
import pytest

from ignitia_sync import ConnectionClosed, ConnectionSettings, Message, Router, WebSocketConnection
from ignitia_sync.connection.inbox import Inbox
from ignitia_sync.connection.transport import COALESCE_FRAME, COALESCE_FRAMES, Transport
from ignitia_sync.sansio.protocol import WebSocketProtocol, encode_frame
from tests.conftest import url
from tests.subprocess_server import ROOT, free_port, running
from tests.wire import Peer, frame


def frame_of(text: str) -> bytes:
    return encode_frame(Message.text(text))


def readable_now(sock: socket.socket) -> bytes:
    """What the peer can read without waiting (b"" when nothing has arrived)."""
    sock.setblocking(False)
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""
    finally:
        sock.setblocking(True)


def in_own_hub(scenario: Callable[[Transport, Inbox, socket.socket], Any], **options: Any) -> Any:
    """Run ``scenario(transport, inbox, peer)`` in a thread with a hub of its own."""
    result: list[Any] = []

    def run() -> None:
        ours, theirs = gevent.socket.socketpair()
        inbox = Inbox(16, lambda: None)
        transport = Transport(ours, WebSocketProtocol(), inbox, **options)
        transport.start()
        inbox.reader = gevent.getcurrent()  # as the handler is once it has waited in recv()
        try:
            result.append(scenario(transport, inbox, theirs))
        except BaseException as exc:  # handed to the test's thread, which raises it
            result.append(exc)
        finally:
            theirs.close()
            transport.teardown()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    assert result, "the scenario did not finish"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_replies_to_waiting_input_leave_together_when_the_handler_waits():
    def scenario(transport: Transport, inbox: Inbox, peer: socket.socket) -> tuple[bytes, bytes]:
        inbox.put(Message.text("more input"))
        transport.send(frame_of("a"))
        transport.send(frame_of("b"))
        before = readable_now(peer)
        gevent.sleep(0)  # the handler waits: the hub's turn writes the queue
        return before, readable_now(peer)

    before, after = in_own_hub(scenario)
    assert before == b""
    assert after == frame_of("a") + frame_of("b")


def test_with_no_input_waiting_a_send_is_written_before_it_returns():
    def scenario(transport: Transport, inbox: Inbox, peer: socket.socket) -> bytes:
        transport.send(frame_of("a"))
        return readable_now(peer)

    assert in_own_hub(scenario) == frame_of("a")


def test_coalesce_writes_false_writes_every_send_before_it_returns():
    def scenario(transport: Transport, inbox: Inbox, peer: socket.socket) -> bytes:
        inbox.put(Message.text("more input"))
        transport.send(frame_of("a"))
        return readable_now(peer)

    assert in_own_hub(scenario, coalesce_writes=False) == frame_of("a")
    assert ConnectionSettings(coalesce_writes=False).coalesce_writes is False
    with pytest.raises(TypeError, match="coalesce_writes must be True or False"):
        ConnectionSettings(coalesce_writes="no")  # type: ignore[arg-type]


def test_a_send_once_the_input_is_read_writes_the_queue_first_in_order():
    def scenario(transport: Transport, inbox: Inbox, peer: socket.socket) -> bytes:
        inbox.put(Message.text("more input"))
        transport.send(frame_of("a"))
        inbox.get(0)  # the handler reads it: nothing waits any more
        transport.send(frame_of("b"))
        return readable_now(peer)

    assert in_own_hub(scenario) == frame_of("a") + frame_of("b")


def test_a_large_frame_is_not_held_and_goes_after_the_queued_ones():
    big = encode_frame(Message.binary(b"x" * COALESCE_FRAME))

    def scenario(transport: Transport, inbox: Inbox, peer: socket.socket) -> bytes:
        inbox.put(Message.text("more input"))
        transport.send(frame_of("a"))
        transport.send(big)
        got = b""
        while len(got) < len(frame_of("a")) + len(big):
            got += peer.recv(1 << 20)
        return got

    assert in_own_hub(scenario) == frame_of("a") + big


def test_at_most_coalesce_frames_are_held():
    def scenario(transport: Transport, inbox: Inbox, peer: socket.socket) -> tuple[bytes, bytes]:
        inbox.put(Message.text("more input"))
        for number in range(COALESCE_FRAMES):
            transport.send(frame_of(str(number % 10)))
        held = readable_now(peer)
        transport.send(frame_of("last"))  # one over: everything is written now
        return held, readable_now(peer)

    held, written = in_own_hub(scenario)
    assert held == b""
    assert written == b"".join(frame_of(str(number % 10)) for number in range(COALESCE_FRAMES)) + frame_of("last")


def test_a_lost_peer_shows_at_the_next_send():
    """The queued frame could not be written: the handler learns it at its next send."""
    def scenario(transport: Transport, inbox: Inbox, peer: socket.socket) -> str:
        inbox.put(Message.text("more input"))
        transport.send(frame_of("a"))  # queued: the peer is not written to yet
        peer.close()
        gevent.sleep(0.05)  # the queue is written into a closed socket: the connection is lost
        inbox.get(0)
        try:
            transport.send(transport.proto.send_text("b"))  # what WebSocketConnection.send does
        except ConnectionClosed:
            return "closed"
        return "sent"

    assert in_own_hub(scenario) == "closed"


def test_a_burst_of_messages_gets_every_reply_in_order_from_a_real_server(serve):
    """Eight messages in one TCP write: eight echoes, in order, then the Close.

    (This process is not monkey-patched, so nothing is held here: the patched server of
    test_an_ack_is_on_the_wire_while_the_handler_blocks_after_it holds its frames.)"""

    def echo_then_end(ws: WebSocketConnection) -> None:
        for _ in range(8):
            message = ws.recv()
            assert message is not None
            ws.send(message)
        ws.close(1000, "done")

    server = serve(Router().websocket("/", echo_then_end))
    peer = Peer(server.address)
    peer.upgrade("/")
    peer.send(b"".join(frame(1, str(number).encode()) for number in range(8)))
    got = [peer.read_frame()[:2] for _ in range(9)]
    assert got == [(1, str(number).encode()) for number in range(8)] + [(8, b"\x03\xe8done")]


def test_the_inbox_reader_is_the_greenlet_that_waited():
    def scenario(transport: Transport, inbox: Inbox, peer: socket.socket) -> bool:
        inbox.reader = None
        inbox.get(0.01)  # waits (nothing there), then times out
        return inbox.reader is gevent.getcurrent()

    assert in_own_hub(scenario) is True


def test_another_greenlets_send_is_written_before_it_returns():
    """An acknowledged send_to writes from a greenlet of its own: its ack must mean written."""

    def scenario(transport: Transport, inbox: Inbox, peer: socket.socket) -> bytes:
        inbox.put(Message.text("more input"))  # waiting for the handler, not for this greenlet

        def send_then_look() -> bytes:  # no switch between the two: what send() itself wrote
            transport.send(frame_of("acked"))
            return readable_now(peer)

        greenlet = gevent.spawn(send_then_look)
        greenlet.join()
        return greenlet.value

    assert in_own_hub(scenario) == frame_of("acked")


def test_held_frames_keep_their_order_with_a_broadcast_and_the_close():
    def scenario(transport: Transport, inbox: Inbox, peer: socket.socket) -> bytes:
        inbox.put(Message.text("more input"))
        transport.send(frame_of("reply"))  # held
        broadcast = frame_of("broadcast")
        transport.push(broadcast, len(broadcast))  # queued behind it
        transport.close(1000, "bye")  # the Close goes after both, at once
        got = b""
        while len(got) < len(frame_of("reply") + broadcast) + 5:
            got += peer.recv(65536)
        return got

    got = in_own_hub(scenario)
    assert got == frame_of("reply") + frame_of("broadcast") + b"\x88\x05\x03\xe8bye"


SERVER = """
import socket
import sys

if sys.argv[1] == "patched":
    from gevent import monkey

    monkey.patch_all()

from ignitia_sync import Router, Server

RELEASE = ("127.0.0.1", int(sys.argv[3]))


def handler(ws):
    ws.recv()  # the first of two messages sent in one write: the second waits
    ws.send("ack")
    # A blocking call: cooperative when patched, blocking the whole hub when not.
    with socket.create_connection(RELEASE) as release:
        release.recv(1)  # until the test has seen the ack and says go
    ws.recv()


server = Server(Router().websocket("/", handler), ("127.0.0.1", int(sys.argv[2])))
server.start()
server.serve_forever()
"""


@pytest.mark.parametrize("process", ["patched", "plain"])
def test_an_ack_is_on_the_wire_while_the_handler_blocks_after_it(tmp_path, process):
    """Patched, a held frame leaves at the hub's next turn; not patched, send() wrote it already."""
    program = tmp_path / "server.py"
    program.write_text(SERVER)
    port = free_port()
    with socket.create_server(("127.0.0.1", 0)) as release, running(
        [sys.executable, str(program), process, str(port), str(release.getsockname()[1])], port
    ):
        release.settimeout(10)
        peer = Peer(("127.0.0.1", port))
        peer.upgrade("/")
        peer.send(frame(1, b"first") + frame(1, b"second"))
        handler, _ = release.accept()  # the handler is in its blocking call now
        with handler:
            assert peer.read_frame()[:2] == (1, b"ack")  # (10 s at most) before it is released
            handler.sendall(b"x")
        assert peer.read_close()[0] == 1000  # the handler read "second" and returned
        peer.close()


def test_a_client_writes_its_send_before_it_returns_even_when_messages_wait(serve):
    """A patched script waits in recv(), gets two messages in one read, answers the first and exits at once."""
    got: list[Any] = []

    def two_at_once(ws: WebSocketConnection) -> None:
        ws.recv(timeout=10)  # "go": the client is waiting in its recv() now
        ws.send_batch([Message.text("one"), Message.text("two")])  # one write: one read there
        got.append(ws.recv(timeout=10))

    server = serve(Router().websocket("/", two_at_once))
    script = textwrap.dedent(
        f"""
        from gevent import monkey; monkey.patch_all()
        import os
        from ignitia_sync.client import connect

        ws = connect({url(server, "/")!r})
        ws.send("go")
        ws.recv()  # waits (the inbox's reader), then "one"; "two" still waits in the inbox
        ws.send("reply to one")
        os._exit(0)  # no close, no wait
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for _ in range(200):
        if got:
            break
        time.sleep(0.05)
    assert got and got[0] == Message.text("reply to one")
