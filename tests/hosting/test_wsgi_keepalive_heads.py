"""Every request head on a connection handed to the WSGI app is bounded, not only the first.

The server reads the first request head itself, inside ``handshake_timeout`` and the
pending-handshake caps; pywsgi's handler then reads the next ones (keep-alive) in a loop.
Each of those heads (the wait for it included) has its own ``handshake_timeout`` deadline,
and a connection waiting for one counts as a pending handshake.
"""

from __future__ import annotations

import selectors
import socket
import time

from ignitia_sync import Router, Server

CLIENTS = 40


def page(environ, start_response):
    body = f"page {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length; returns its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk
        body += chunk
    return body


def wait_for_eof(socks: list[socket.socket], seconds: float) -> list[socket.socket]:
    """Read every socket until its EOF (or a reset), at most ``seconds``; returns those still open."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    open_ = set(socks)
    deadline = time.monotonic() + seconds
    while open_ and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            try:
                data = sock.recv(4096)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                selector.unregister(sock)
                open_.discard(sock)  # type: ignore[arg-type]
    selector.close()
    return list(open_)


def test_a_half_sent_second_head_on_a_keep_alive_connection_is_dropped_after_handshake_timeout():
    server = Server(Router(), ("127.0.0.1", 0), wsgi_app=page, handshake_timeout=2, handle_signals=False)
    server.start_in_thread()
    socks = []
    try:
        for n in range(CLIENTS):
            sock = socket.create_connection(server.address, timeout=10)
            sock.sendall(f"GET /first/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_response(sock) == f"page /first/{n}".encode()
            sock.sendall(b"GET /second HTTP/1.1\r\nHo")  # half of a second head, then silence
            socks.append(sock)
        started = time.monotonic()
        still_open = wait_for_eof(socks, 15)
        waited = time.monotonic() - started
        assert not still_open, f"{len(still_open)} of {CLIENTS} half-sent second heads still open after {waited:.1f}s"
        print(f"all {CLIENTS} dropped after {waited:.1f}s (handshake_timeout=2)")
        with socket.create_connection(server.address, timeout=10) as fresh:  # the server still serves
            fresh.sendall(b"GET /fresh HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(fresh) == b"page /fresh"
            fresh.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # keep-alive still works
            assert read_response(fresh) == b"page /again"
    finally:
        for sock in socks:
            sock.close()
        server.stop(timeout=5)


def test_an_idle_keep_alive_connection_is_closed_after_handshake_timeout_and_a_busy_one_is_not():
    """The deadline is per head: a connection sending a request every 0.5 s lives on past it."""
    server = Server(Router(), ("127.0.0.1", 0), wsgi_app=page, handshake_timeout=1, handle_signals=False)
    server.start_in_thread()
    idle = socket.create_connection(server.address, timeout=10)
    busy = socket.create_connection(server.address, timeout=10)
    try:
        for sock in (idle, busy):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock) == b"page /"
        for n in range(6):  # 3 s: three times the deadline
            time.sleep(0.5)
            busy.sendall(f"GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_response(busy) == f"page /{n}".encode()
        assert wait_for_eof([idle], 5) == []
    finally:
        idle.close()
        busy.close()
        server.stop(timeout=5)
