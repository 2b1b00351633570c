"""The server's WSGI fallback: plain HTTP on the WebSocket port, answered by pywsgi's handler.

End to end (a Flask or Django app behind ``TestClient``, ``ignitia-sync MODULE:app``) it is
tested in tests/test_testing.py and tests/e2e/test_wsgi_servers.py; here its parts are: the replay of
the bytes the server read while routing, keep-alive after it, the environ, and
``take_socket`` finding the socket (and the bytes past the head) through the replay.
"""

from __future__ import annotations

import io
import socket

import gevent
import gevent.socket
import pytest

from ignitia_sync import Router, Server
from ignitia_sync.hosting.pywsgi_fallback import HandOff, PywsgiFallback, Replay
from ignitia_sync.hosting.sockets import take_socket


def app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    text = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {body.decode()}".strip()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text.encode()]


def read_responses(sock: gevent.socket.socket, count: int) -> list[bytes]:
    stream = sock.makefile("rb")
    bodies = []
    for _ in range(count):
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += stream.readline()
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        bodies.append(stream.read(length))
    return bodies


def test_replay_gives_the_bytes_read_first_then_the_socket():
    ours, theirs = gevent.socket.socketpair()
    replay = Replay(b"abcdef", theirs)
    buffer = bytearray(4)
    assert replay.readinto(buffer) == 4 and buffer == b"abcd"
    assert replay.readinto(buffer) == 2 and buffer[:2] == b"ef"
    ours.sendall(b"gh")
    assert replay.readinto(buffer) == 2 and buffer[:2] == b"gh"
    assert replay.readable()
    assert replay._sock is theirs  # what take_socket looks for, as on pywsgi's own file
    ours.close()
    assert replay.readinto(buffer) == 0  # EOF
    theirs.close()


def test_replay_says_nothing_yet_on_a_non_blocking_socket():
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    try:
        replay = Replay(b"", theirs)  # type: ignore[arg-type]
        assert replay.readinto(bytearray(8)) is None
    finally:
        ours.close()
        theirs.close()


def test_pipelined_requests_and_a_body_split_between_replay_and_socket():
    fallback = PywsgiFallback(app, ("127.0.0.1", 8080))
    ours, theirs = gevent.socket.socketpair()
    already_read = (
        b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello"
    )
    server = gevent.spawn(fallback.serve, HandOff(theirs, already_read), ("127.0.0.1", 50000))
    ours.sendall(b" worl")  # the rest of the body, and then a third request on the same connection
    ours.sendall(b"dGET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert read_responses(ours, 3) == [b"GET /first", b"POST /second hello world", b"GET /third"]
    server.get(timeout=5)
    assert theirs.fileno() == -1  # closed after the connection's last request
    ours.close()


def test_the_environ_names_the_server_and_its_scheme():
    seen = {}

    def record(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    ours, theirs = gevent.socket.socketpair()
    PywsgiFallback(record, ("10.0.0.1", 8443), https=True).serve(
        HandOff(theirs, b"GET /x?q=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), ("192.0.2.7", 40000)
    )
    assert seen["SERVER_NAME"] == "10.0.0.1" and seen["SERVER_PORT"] == "8443"
    assert seen["SERVER_SOFTWARE"] == "ignitia_sync gevent.pywsgi"
    assert seen["wsgi.url_scheme"] == "https"
    assert seen["REMOTE_ADDR"] == "192.0.2.7"
    assert (seen["PATH_INFO"], seen["QUERY_STRING"]) == ("/x", "q=1")
    assert PywsgiFallback(record, ("h", 80)).environ["wsgi.url_scheme"] == "http"
    ours.close()


def test_take_socket_finds_the_socket_and_the_bytes_past_the_head_through_the_replay():
    taken = {}

    def upgrading(environ, start_response):
        result = take_socket(environ)
        taken.update(sock=result.sock, buffered=result.buffered, threaded=result.threaded)
        start_response("204 No Content", [])
        return []

    ours, theirs = gevent.socket.socketpair()
    # pywsgi gives its reader itself as wsgi.input only to a request asking for an upgrade.
    head = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    server = gevent.spawn(
        PywsgiFallback(upgrading, ("h", 80)).serve, HandOff(theirs, head + b"first frame"), ("127.0.0.1", 1)
    )
    with gevent.Timeout(5):
        while not taken:
            gevent.sleep(0.01)
    assert taken == {"sock": theirs, "buffered": b"first frame", "threaded": False}
    ours.close()  # the client goes: pywsgi's handler ends, and the fallback closes the socket
    server.get(timeout=5)
    assert theirs.fileno() == -1


@pytest.mark.parametrize("listen", [False, True])
def test_the_server_hands_what_is_not_an_upgrade_to_its_wsgi_app(listen):
    server = Server(Router(), ("127.0.0.1", 0), wsgi_app=app, handle_signals=False)
    server.start(listen=listen)
    try:
        assert isinstance(server._wsgi, PywsgiFallback)
        host, port = server.address
        assert server._wsgi.environ["SERVER_PORT"] == str(port)  # the bound port, not 0
        if listen:
            ours = gevent.socket.create_connection((host, port))
        else:
            ours, theirs = gevent.socket.socketpair()
            server.serve_socket(theirs, ("127.0.0.1", 50000))
        ours.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(ours, 2) == [b"GET /a", b"GET /b"]
        ours.close()
    finally:
        server.stop(timeout=2)


def test_a_server_without_a_wsgi_app_has_no_fallback():
    server = Server(Router(), ("127.0.0.1", 0), handle_signals=False)
    server.start(listen=False)
    try:
        assert server._wsgi is None
    finally:
        server.stop()


def test_the_buffered_reader_over_a_replay_reads_lines_across_the_seam():
    ours, theirs = gevent.socket.socketpair()
    ours.sendall(b"ond line\r\n")
    stream = io.BufferedReader(Replay(b"first line\r\nsec", theirs))
    assert stream.readline() == b"first line\r\n"
    assert stream.readline() == b"second line\r\n"
    ours.close()
    theirs.close()
