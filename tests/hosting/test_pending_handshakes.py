"""The pending-handshake caps: a burst is served, silence is what costs a place.

``max_pending_handshakes`` holds the listener (the kernel's backlog queues new connections)
instead of answering 503; ``max_pending_handshakes_per_ip`` counts only sockets silent for
longer than ``handshake_grace``, and a newcomer takes the place of the oldest of them. The
storms themselves (thousands of clients, a server in its own process) are in test_storms.py.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from websockets.sync.client import connect

from ignitia_sync import Router, ServerSettings
from tests.apps import ECHO
from tests.conftest import url
from tests.waiting import wait_for
from tests.wire import Peer, handshake_bytes


def page(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def silent_socket(address: tuple[str, int], source: str = "127.0.0.1", half_a_head: bool = False) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(address)
    if half_a_head:
        sock.sendall(handshake_bytes("/echo")[:40])
    return sock


def answer(sock: socket.socket, timeout: float) -> bytes | None:
    """What the server sent before closing the socket; None while it is still open after ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


def still_open(sock: socket.socket) -> bool:
    return answer(sock, 0.05) is None


def echoes(server, text: str = "hi") -> bool:
    with connect(url(server, "/echo"), open_timeout=10) as client:
        client.send(text)
        return client.recv(timeout=5) == text


def test_a_burst_from_one_address_past_the_per_address_cap_is_served(serve):
    server = serve(ECHO, max_pending_handshakes_per_ip=5, handshake_timeout=30)
    peers = [Peer(server.address) for _ in range(60)]  # all connected before any sends a byte
    wait_for(lambda: server._pending == 60, "all 60 to wait for their head at once")
    for peer in peers:
        peer.send(handshake_bytes("/echo"))
    assert [peer.read_head()[0] for peer in peers] == [101] * 60
    assert 503 not in server.stats()["refused"]
    for peer in peers:
        peer.close()


def test_at_the_global_cap_the_listener_is_held_not_refusing(serve):
    server = serve(ECHO, max_pending_handshakes=5, handshake_grace=30, handshake_timeout=30)
    silent = [silent_socket(server.address) for _ in range(5)]
    waiting = Peer(server.address)  # connected: the kernel's backlog holds it
    waiting.send(handshake_bytes("/echo"))
    assert answer(waiting.sock, 0.5) is None  # neither served nor refused while the five wait
    assert server._stream is not None and server._stream.held
    silent[0].close()  # a place frees: the listener accepts again
    waiting.sock.settimeout(10)
    assert waiting.read_head()[0] == 101
    assert echoes(server)
    assert 503 not in server.stats()["refused"]
    for sock in silent[1:]:
        assert still_open(sock)  # none was silent for handshake_grace: none was dropped
        sock.close()
    waiting.close()


def test_at_the_global_cap_the_oldest_socket_silent_past_the_grace_makes_room(serve):
    server = serve(ECHO, max_pending_handshakes=5, handshake_grace=0.3, handshake_timeout=30)
    # From five addresses, one each: no per-address cap is involved. The oldest has sent half a head.
    silent = [silent_socket(server.address, f"127.0.0.{n}", half_a_head=not n % 2) for n in range(2, 7)]
    assert echoes(server)  # held for the grace, then the oldest silent socket is dropped
    oldest = answer(silent[0], 5)
    assert oldest is not None and oldest.startswith(b"HTTP/1.1 503 "), oldest
    assert sum(still_open(sock) for sock in silent[1:]) >= 3  # one place per newcomer (and the probe)
    assert server.stats()["refused"][503] >= 1
    for sock in silent:
        sock.close()


def test_a_new_client_takes_the_place_of_the_oldest_silent_socket_from_its_address(serve):
    server = serve(ECHO, max_pending_handshakes_per_ip=5, handshake_grace=0.2, handshake_timeout=30)
    silent = [silent_socket(server.address, half_a_head=True) for _ in range(5)]
    time.sleep(0.4)  # all five are past the grace now
    assert echoes(server)
    oldest = answer(silent[0], 5)
    assert oldest is not None and oldest.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5" in oldest, oldest
    assert all(still_open(sock) for sock in silent[1:])
    assert server.stats()["refused"][503] == 1
    other = silent_socket(server.address, "127.0.0.2")  # another address's silent sockets are its own
    assert echoes(server)
    assert still_open(other)
    for sock in [*silent, other]:
        sock.close()


def test_silent_sockets_younger_than_the_grace_are_never_dropped_for_a_newcomer(serve):
    server = serve(ECHO, max_pending_handshakes_per_ip=2, handshake_grace=30, handshake_timeout=30)
    silent = [silent_socket(server.address) for _ in range(10)]
    for _ in range(5):
        assert echoes(server)
    assert all(still_open(sock) for sock in silent)
    for sock in silent:
        sock.close()


def test_an_idle_keep_alive_connection_is_counted_and_closed_without_an_answer_to_make_room(serve):
    server = serve(Router(), wsgi_app=page, max_pending_handshakes=3, handshake_grace=0.2, handshake_timeout=30)
    idle = []
    for n in range(3):
        sock = socket.create_connection(server.address, timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while not response.endswith(b"ok"):
            response += sock.recv(4096)
        idle.append(sock)
        if n == 0:
            time.sleep(0.3)  # the first is past the grace (a timer the server measures) before the others come
    wait_for(lambda: server._pending == 3, "each to wait for its next request head")
    fresh = socket.create_connection(server.address, timeout=10)
    fresh.sendall(b"GET /fresh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer(fresh, 10).startswith(b"HTTP/1.1 200 OK")  # type: ignore[union-attr]
    assert answer(idle[0], 5) == b""  # closed, nothing written: it had asked for nothing
    assert still_open(idle[1]) and still_open(idle[2])
    for sock in [*idle, fresh]:
        sock.close()


def test_a_silent_tls_handshake_is_dropped_to_make_room_with_no_plaintext_written(serve, certificate):
    cert_file, key_file = certificate.cert_file, certificate.key_file
    server = serve(ECHO, certfile=cert_file, keyfile=key_file, max_pending_handshakes=2, handshake_grace=0.2,
                   handshake_timeout=30)
    silent = [silent_socket(server.address) for _ in range(2)]  # no ClientHello
    time.sleep(0.3)  # past handshake_grace: a timer the server measures
    assert certificate.echo_over_tls(server.address, "tls") == "tls"
    assert answer(silent[0], 5) == b""  # a 503 in the middle of TLS would be garbage
    for sock in silent:
        sock.close()


def test_the_per_address_cap_is_not_applied_behind_a_trusted_proxy(serve):
    server = serve(ECHO, trust_forwarded=True, max_pending_handshakes_per_ip=1, handshake_grace=0.1,
                   handshake_timeout=30)
    silent = [silent_socket(server.address) for _ in range(3)]
    time.sleep(0.2)  # past handshake_grace (a timer the server measures): they could be dropped, were there a cap
    assert echoes(server)
    assert all(still_open(sock) for sock in silent)  # everyone is the proxy: no address to blame
    for sock in silent:
        sock.close()


def test_handshake_grace_is_checked():
    with pytest.raises(ValueError, match="handshake_grace"):
        ServerSettings(handshake_grace=-1)
    with pytest.raises(ValueError, match="handshake_grace"):
        ServerSettings(handshake_grace=float("nan"))
    assert ServerSettings().handshake_grace == 1.0


def test_serve_socket_counts_its_connections_too(serve):
    import gevent.socket

    server = serve(ECHO)
    ours, theirs = socket.socketpair()

    def serve_it() -> None:  # in the server's thread, with a socket of its hub
        server.serve_socket(gevent.socket.socket(fileno=theirs.detach()), ("127.0.0.1", 50000))

    with contextlib.closing(ours):
        assert server._hub is not None and server._hub.spawn_soon(serve_it)
        wait_for(lambda: server._pending == 1, "the socket counted as a pending handshake")
        assert server._pending == 1 and len(server._silent) == 1
        ours.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        ours.settimeout(5)
        assert ours.recv(100).startswith(b"HTTP/1.1 404 ")
    wait_for(lambda: not server._pending, "no pending handshake left")
    assert server._pending == 0 and not server._silent and not server._silent_per_ip


def test_silent_sockets_past_the_per_address_cap_are_closed_and_the_closings_do_not_flood_the_log(serve, caplog):
    """What test_hardening's 503-at-once test becomes: each newcomer closes the oldest silent socket.

    They sent nothing, so nothing is written to them: a browser's preconnected socket would
    take a 503 found there as the answer to the request it sends on it later.
    """
    server = serve(ECHO, max_pending_handshakes_per_ip=5, handshake_grace=2.0, handshake_timeout=30)
    silent = [socket.create_connection(server.address) for _ in range(65)]  # slowloris: no request
    # All 65 must be taken in while the first of them is younger than the grace (none evicted
    # yet), then all must have been silent past it: only then is "newcomer i closes silent[i]" exact.
    wait_for(lambda: len(server._silent_per_ip.get("127.0.0.1", ())) == 65, "all 65 silent sockets held", 2.0)
    time.sleep(2.0)  # the grace itself: a time the server measures, not a race
    newcomers = [socket.create_connection(server.address) for _ in range(60)]
    answers = [answer(sock, 5) for sock in silent[:60]]
    assert answers == [b""] * 60, answers  # closed, nothing written
    assert all(still_open(sock) for sock in silent[60:] + newcomers)
    lines = [r.getMessage() for r in caplog.records if "pending handshakes" in r.getMessage()]
    assert 1 <= len(lines) <= 20  # throttled: 20 lines per 10 s at most
    for sock in silent + newcomers:
        sock.close()
    assert echoes(server)  # the address is welcome
    assert 503 not in server.stats()["refused"]  # nothing was asked, nothing refused


def test_stopping_closes_a_socket_that_sent_nothing_without_an_answer_and_answers_a_started_head_503(serve):
    """A browser preconnects sockets it may use much later: after a restart on the same port, a
    503 written to one at the old server's stop became the answer to a page's next request
    (the chat app's history, in tests/e2e/test_chat_app.py, 1 run in 3)."""
    server = serve(ECHO, handshake_timeout=30)
    preconnected = silent_socket(server.address)
    started = silent_socket(server.address, half_a_head=True)
    wait_for(lambda: len(server._silent) == 2, "both sockets waiting for their head")
    server.stop()
    assert answer(preconnected, 5) == b""
    refused = answer(started, 5)
    assert refused is not None and refused.startswith(b"HTTP/1.1 503 "), refused
    assert b"server shutting down" in refused and b"Retry-After: 1" in refused, refused
    assert server.stats()["refused"] == {503: 1}
    for sock in (preconnected, started):
        sock.close()


def test_a_request_that_came_but_was_not_read_yet_counts_as_heard():
    """Evicted before its greenlet read anything, a socket whose request has arrived still gets
    its 503 (closing it with unread bytes would reset it instead); one with nothing gets none."""
    from ignitia_sync.hosting.server import _has_bytes_waiting

    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        assert not _has_bytes_waiting(server_side)
        client_side.sendall(b"GET / HTTP/1.1\r\n")
        wait_for(lambda: _has_bytes_waiting(server_side), "the bytes to arrive")
        assert server_side.recv(100) == b"GET / HTTP/1.1\r\n"  # peeked, not consumed
        assert not _has_bytes_waiting(server_side)
        client_side.close()
        assert not _has_bytes_waiting(server_side)  # an EOF is no request


class _Wrapped:
    """A plain socket as gevent's wraps one (``_sock``): what the server closes."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def close(self) -> None:
        self._sock.close()


def test_an_evicted_socket_whose_request_came_unread_gets_its_503_and_one_with_nothing_gets_none(serve):
    """Evicted before its greenlet read anything (it was still to run): the peek decides."""
    from ignitia_sync.hosting.server import _Evicted

    server = serve(ECHO)
    ours, theirs = socket.socketpair()
    with theirs:
        theirs.sendall(b"GET /echo HTTP/1.1\r\n")
        server._refuse(_Wrapped(ours), ("127.0.0.1", 1), None, _Evicted(), heard=False)
        refused = answer(theirs, 5)
        assert refused is not None and refused.startswith(b"HTTP/1.1 503 "), refused
    assert server.stats()["refused"] == {503: 1}
    ours, theirs = socket.socketpair()
    with theirs:
        server._refuse(_Wrapped(ours), ("127.0.0.1", 1), None, _Evicted(), heard=False)
        assert answer(theirs, 5) == b""
    assert server.stats()["refused"] == {503: 1}
