"""client/reconnect.py's policy: ``retry_on``, ``Backoff.reset_after``, a 429's ``Retry-After``; and the
client's ``close_timeout`` against a server that never answers our Close.

Servers are real: ours (``serve``), or a raw TCP server in a thread that answers exact bytes.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from wsproto.utilities import generate_accept_token

from ignitia_sync import HandshakeError, Message, Router
from ignitia_sync.client import Backoff, connect, reconnecting
from tests.conftest import url


def echo(ws) -> None:
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


def hello_and_bye(ws) -> None:
    ws.send_text("hello")  # then the handler returns: 1000


ROUTER = Router().websocket("/echo", echo).websocket("/bye", hello_and_bye)
UPGRADE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"


def read_head(conn: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a request head")
        head += chunk
    return head


def accept_key(head: bytes) -> bytes:
    key = next(line.split(b": ")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key"))
    return generate_accept_token(key)


@contextlib.contextmanager
def answering(answers: list[bytes]) -> Iterator[int]:
    """A TCP server answering each connection's request head with the next of ``answers`` (then closing)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_all() -> None:
        with contextlib.suppress(OSError):
            for answer in answers:
                conn, _ = listener.accept()
                with conn:
                    read_head(conn)
                    conn.sendall(answer)

    threading.Thread(target=serve_all, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def refusal(status: int, reason: str, *headers: bytes) -> bytes:
    return (f"HTTP/1.1 {status} {reason}\r\n".encode() + b"".join(h + b"\r\n" for h in headers)
            + b"Content-Length: 2\r\n\r\nno")


def test_retry_on_retries_what_it_accepts_and_raises_the_first_error_it_rejects(serve):
    server = serve(ROUTER)
    moved = b"HTTP/1.1 302 Found\r\nLocation: " + url(server, "/echo").encode() + b"\r\nContent-Length: 0\r\n\r\n"
    seen: list[int] = []

    def only_404(exc: BaseException) -> bool:
        seen.append(getattr(exc, "status", 0))
        return isinstance(exc, HandshakeError) and exc.status == 404

    with answering([refusal(404, "Not Found"), refusal(404, "Not Found"), moved]) as port:
        loop = reconnecting(f"ws://127.0.0.1:{port}/", backoff=Backoff(first=0.01, cap=0.02), retry_on=only_404)
        for ws in loop:  # a 404 is never retried by default; this rule retries it
            ws.send_text("through")
            assert ws.recv(timeout=5) == Message.text("through")
            loop.stop()
    assert seen == [404, 404] and loop.attempts == 3 and loop.connections == 1

    with answering([refusal(503, "Service Unavailable"), refusal(404, "Not Found")]) as port:
        loop = reconnecting(f"ws://127.0.0.1:{port}/", backoff=Backoff(first=0.01, cap=0.02), retry_on=only_404)
        with pytest.raises(HandshakeError) as refused:  # the default would retry a 503: this rule does not
            for _ in loop:
                pytest.fail("no connection")
    assert refused.value.status == 503 and loop.attempts == 1 and loop.last_error is refused.value


@pytest.mark.parametrize(("retry_after", "expected_delay"), [(b"Retry-After: 3600", 0.5), (b"Retry-After: 0", None)])
def test_a_429_is_retried_no_sooner_than_its_retry_after_and_never_past_the_backoff_cap(serve, retry_after,
                                                                                        expected_delay):
    server = serve(ROUTER)
    moved = b"HTTP/1.1 302 Found\r\nLocation: " + url(server, "/echo").encode() + b"\r\nContent-Length: 0\r\n\r\n"
    backoff = Backoff(first=0.05, factor=1.0, cap=0.5)
    with answering([refusal(429, "Too Many Requests", retry_after), moved]) as port:
        loop = reconnecting(f"ws://127.0.0.1:{port}/", backoff=backoff)
        for ws in loop:
            ws.send_text("admitted")
            assert ws.recv(timeout=5) == Message.text("admitted")
            loop.stop()
    assert loop.attempts == 2 and loop.connections == 1
    error = loop.last_error
    assert isinstance(error, HandshakeError) and error.status == 429 and error.body == "no"
    assert ("retry-after", retry_after.split(b": ")[1].decode()) in error.headers  # h11 lower-cases names
    if expected_delay is None:  # asked for no wait: the backoff's own draw, 0 .. first
        assert 0 <= loop.last_delay <= 0.05
    else:  # asked for an hour: the cap, not the hour and not the backoff's draw
        assert loop.last_delay == expected_delay


@pytest.mark.parametrize(("reset_after", "expected"), [(0.0, [0, 0, 0]), (60.0, [0, 1, 2])])
def test_reset_after_decides_whether_a_connection_that_dropped_starts_the_waits_again(serve, reset_after, expected):
    server = serve(ROUTER)
    backoff = Backoff(first=0.01, factor=2.0, cap=0.04, reset_after=reset_after)
    drawn: list[int] = []
    original = backoff.delay

    def watch(attempt: int) -> float:
        drawn.append(attempt)
        return original(attempt)

    object.__setattr__(backoff, "delay", watch)  # frozen dataclass: record which retry number is drawn
    loop = reconnecting(url(server, "/bye"), backoff=backoff)
    for ws in loop:
        assert list(ws) == [Message.text("hello"), Message.close_with_reason(1000, "")]
        if loop.connections == 4:
            loop.stop()
    # Each connection lasted far less than 60 s (not stable: the retry count grows) and at least 0 s
    # (stable: the next wait is drawn as the first retry's again).
    assert drawn == expected and loop.connections == 4 and loop.attempts == 4


def test_close_timeout_bounds_the_wait_for_a_server_that_never_answers_our_close():
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, object] = {}

    def silent_server() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)  # far beyond the client's close_timeout, far below the default 10 s
            head = read_head(conn)
            conn.sendall(UPGRADE + b"Sec-WebSocket-Accept: " + accept_key(head) + b"\r\n\r\n")
            data = b""
            try:
                while chunk := conn.recv(4096):
                    data += chunk
                seen["eof"] = True  # the client dropped the connection: we never answered its Close
            except TimeoutError:
                seen["eof"] = False
            seen["frame"] = data

    thread = threading.Thread(target=silent_server, daemon=True)
    thread.start()
    try:
        ws = connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", compression=None, close_timeout=0.3)
        ws.close_and_wait(1000, "bye")
        thread.join(10)
    finally:
        listener.close()
    assert seen["eof"] is True
    frame = seen["frame"]
    assert isinstance(frame, bytes) and frame[0] == 0x88 and frame[1] == 0x80 | 5  # one masked Close, 5 bytes
    mask, payload = frame[2:6], frame[6:11]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) == struct.pack("!H", 1000) + b"bye"
    assert len(frame) == 11  # nothing after the Close
    # close_code is the first Close frame's: ours (none came back); the connection is over.
    assert (ws.close_code, ws.close_reason, ws.state) == (1000, "bye", "closed")
