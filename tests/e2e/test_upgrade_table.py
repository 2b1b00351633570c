"""One table of bad upgrade requests, sent as raw bytes to every host: the same status everywhere.

Every host of a connection goes through one upgrade pipeline (``Host.open`` in
ignitia_sync/hosting/host.py): shutdown, the head and key checks, the connection limits,
then the route's middleware. Each row below is a valid upgrade but for one thing, so each
host must answer it with the row's status, whoever parsed the HTTP, and a refusal must carry
our pipeline's reason (no WSGI server or framework in front answered first):

    host \\ row          what parses the request head       app
    server             our RequestHeadReader (in process)  Router
    testclient         the same, over a socketpair         Router
    gunicorn-gevent    gunicorn -k gevent                  WebSocketMiddleware
    gunicorn-worker    gunicorn -k ignitia_sync...Worker   Flask + Sock
    pywsgi             gevent.pywsgi.WSGIServer            WebSocketMiddleware
    werkzeug           flask run (threaded)                Flask + Sock
    runserver          manage.py runserver                 Django websocket_view

Every host has ``max_connections_per_ip=1``, set as its users set it (tests/scripts/
upgrade_table_app.py, tests/scripts/upgrade_table_django.py). Each subprocess starts once
per module; every read is bounded (5 s) and everything is on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import gevent
import gevent.socket
import pytest

from ignitia_sync import Server
from ignitia_sync.testing import TestClient

from ..scripts.upgrade_table_app import HOST_SETTINGS, router
from ..subprocess_server import ROOT, free_port, host_command, running
from ..wire import frame

TIMEOUT = 5.0  # every socket read, and every wait
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample nonce (section 1.3), and its accept value
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
EVIL_ORIGIN = "http://evil.example"
APP = "tests.scripts.upgrade_table_app"
FLASK_APP = f"{APP}:create_flask_app()"
MANAGE = os.path.join(ROOT, "examples", "django_project", "manage.py")


# -- the rows -----------------------------------------------------------------------------


def upgrade(
    authority: str, path: str = "/ws/echo", *, http: str = "HTTP/1.1", with_host: bool = True, key: str = KEY,
    version: str = "13", extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A valid upgrade request (RFC 6455 4.1) but for what the arguments change."""
    lines = [f"GET {path} {http}"]
    if with_host:
        lines.append(f"Host: {authority}")
    lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
              f"Sec-WebSocket-Version: {version}"]
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


#: ~20 KB of headers, each line ~1 KB: past max_request_head (16384) but under every WSGI
#: server's own per-line limit (gunicorn's limit_request_field_size is 8190).
PADDING = tuple((f"X-Pad-{n}", "a" * 1000) for n in range(20))


class Row(NamedTuple):
    status: int
    request: Callable[[str], bytes]  # the Host header's value -> the request's bytes
    #: Part of our refusal's reason: the answer came from our pipeline, not from the WSGI
    #: server or the framework in front of it with the same status.
    says: bytes = b""


ROWS = {
    "missing-host": Row(400, lambda authority: upgrade(authority, with_host=False), b"one Host header"),
    "http-1.0": Row(400, lambda authority: upgrade(authority, http="HTTP/1.0"), b"needs HTTP/1.1"),
    "version-8": Row(426, lambda authority: upgrade(authority, version="8"), b"Sec-WebSocket-Version"),
    "malformed-key": Row(400, lambda authority: upgrade(authority, key="abc"), b"malformed Sec-WebSocket-Key"),
    "oversize-head": Row(431, lambda authority: upgrade(authority, extra=PADDING), b"request head too large"),
    "forbidden-origin": Row(
        403, lambda authority: upgrade(authority, "/ws/guarded", extra=(("Origin", EVIL_ORIGIN),)), b"not allowed"
    ),
    "valid": Row(101, lambda authority: upgrade(authority)),
    # A second upgrade while one WebSocket from the same IP is open (max_connections_per_ip=1).
    "second-connection": Row(503, lambda authority: upgrade(authority), b"too many connections"),
}


# -- the hosts ----------------------------------------------------------------------------


@dataclass
class Host:
    """A host under test: how to open a connection to it, and the Host header to name it by."""

    name: str
    authority: str
    dial: Callable[[], socket.socket]


def tcp(port: int) -> Callable[[], socket.socket]:
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def gunicorn(worker: str, target: str, port: int) -> list[str]:
    command = host_command("gunicorn", target, port)
    command[command.index("-k") + 1] = worker
    return command


#: Each subprocess host: its command, and its environment on top of ours.
SUBPROCESSES: dict[str, Callable[[int], tuple[list[str], dict[str, str]]]] = {
    "gunicorn-gevent": lambda port: (gunicorn("gevent", f"{APP}:wsgi_app", port), {}),
    "gunicorn-worker": lambda port: (gunicorn("ignitia_sync.gunicorn.Worker", FLASK_APP, port), {}),
    "pywsgi": lambda port: ([sys.executable, os.path.join(ROOT, *APP.split(".")) + ".py", str(port)], {}),
    "werkzeug": lambda port: (host_command("werkzeug", FLASK_APP, port), {}),
    # Django's development server as test_django.py runs it (autoreloader on), our settings injected.
    "runserver": lambda port: ([sys.executable, MANAGE, "runserver", f"127.0.0.1:{port}"],
                               {"DJANGO_SETTINGS_MODULE": "tests.scripts.upgrade_table_django"}),
}
HOSTS = ["server", "testclient", *SUBPROCESSES]


@contextlib.contextmanager
def in_process_server() -> Iterator[Host]:
    server = Server(router, ("127.0.0.1", 0), **HOST_SETTINGS)
    server.start_in_thread()
    try:
        port = server.address[1]
        yield Host("server", f"127.0.0.1:{port}", tcp(port))
    finally:
        server.stop(timeout=5)


@contextlib.contextmanager
def socketpair_host() -> Iterator[Host]:
    """The TestClient's server, in this thread's hub: raw bytes through ``serve_socket``."""
    ports = itertools.count(50000)
    with TestClient(router, **HOST_SETTINGS) as client:

        def dial() -> socket.socket:
            ours, theirs = gevent.socket.socketpair()
            ours.settimeout(TIMEOUT)
            client.server.serve_socket(theirs, ("127.0.0.1", next(ports)))
            return ours

        yield Host("testclient", "127.0.0.1", dial)


@pytest.fixture(scope="module", params=HOSTS)
def host(request: pytest.FixtureRequest) -> Iterator[Host]:
    name: str = request.param
    if name == "server":
        with in_process_server() as served:
            yield served
        return
    if name == "testclient":
        with socketpair_host() as served:
            yield served
        return
    port = free_port()
    command, env = SUBPROCESSES[name](port)
    with running(command, port, env) as process:
        served = Host(name, f"127.0.0.1:{port}", tcp(port))
        wait_until_serving(served, process)
        yield served


def wait_until_serving(host: Host, process: subprocess.Popen[str]) -> None:
    """Until the app answers plain HTTP: gunicorn's master listens before its worker has loaded
    the app, so a worker that cannot load it fails here, in this host's setup, not later."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with host.dial() as sock:
                sock.sendall(f"GET / HTTP/1.1\r\nHost: {host.authority}\r\nConnection: close\r\n\r\n".encode())
                if recv(sock, time.monotonic() + TIMEOUT).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, f"{host.name} does not serve"
        time.sleep(0.1)


# -- the wire -----------------------------------------------------------------------------


class Answer(NamedTuple):
    status: int
    head: str
    body: bytes
    sock: socket.socket

    def __str__(self) -> str:
        return f"{self.head}\r\n\r\n{self.body.decode('latin-1')}"


def recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.01, min(TIMEOUT, deadline - time.monotonic())))
    return sock.recv(65536)


def send_request(host: Host, data: bytes) -> Answer:
    """Send ``data`` on a new connection; read the response head (and a refusal's body)."""
    sock = host.dial()
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # it answered before reading everything (431): the answer is there to read
    deadline = time.monotonic() + TIMEOUT
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = recv(sock, deadline)
        if not chunk:
            sock.close()
            raise AssertionError(f"{host.name}: closed before a response head: {buffer!r}")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    status = int(text.split(" ", 2)[1])
    if status != 101:
        with contextlib.suppress(OSError):  # the body only says who answered, for the report
            while not complete(text, body) and (chunk := recv(sock, deadline)):
                body += chunk
    return Answer(status, text, body, sock)


def complete(head: str, body: bytes) -> bool:
    """Whether ``body`` is all of the body that ``head`` announces (raw: chunks are not decoded)."""
    fields = dict(line.lower().split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
    if fields.get("transfer-encoding", "").strip() == "chunked":
        return body.endswith(b"0\r\n\r\n")
    if "content-length" in fields:
        return len(body) >= int(fields["content-length"])
    return False  # neither: the body ends with the connection


def read_frame(sock: socket.socket, buffer: bytes) -> tuple[int, bytes, bytes]:
    """(opcode, payload, what is left) of the next small server frame."""
    deadline = time.monotonic() + TIMEOUT
    while len(buffer) < 2 or len(buffer) < 2 + (buffer[1] & 0x7F):
        chunk = recv(sock, deadline)
        assert chunk, f"closed in the middle of a frame: {buffer!r}"
        buffer += chunk
    assert buffer[1] & 0x7F < 126, "a small frame was expected"
    end = 2 + (buffer[1] & 0x7F)
    return buffer[0] & 0x0F, buffer[2:end], buffer[end:]


def check_open(answer: Answer) -> bytes:
    """A 101 for our key, and a WebSocket that echoes: a connection the host now holds.

    Returns what was read past the echo (nothing, unless the server sent more).
    """
    assert f"Sec-WebSocket-Accept: {ACCEPT}".lower() in answer.head.lower(), answer.head
    answer.sock.sendall(frame(0x1, b"still here"))
    opcode, payload, rest = read_frame(answer.sock, answer.body)
    assert (opcode, payload) == (0x1, b"still here")
    return rest


def close(answer: Answer, buffer: bytes) -> None:
    """The closing handshake from our side: Close 1000, its echo, then the server's EOF."""
    answer.sock.sendall(frame(0x8, struct.pack("!H", 1000)))
    opcode, payload, _ = read_frame(answer.sock, buffer)
    assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 1000))
    deadline = time.monotonic() + TIMEOUT
    while recv(answer.sock, deadline):
        pass
    answer.sock.close()


def wait_until_released(host: Host) -> None:
    """Until the host has let go of our last connection (its place is freed after its socket
    is closed, so a little after we see the EOF).

    The probe holds nothing: the limits are checked before the route's middleware, so a
    forbidden Origin gets 503 while our place is held, 403 once it is free.
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        answer = send_request(host, ROWS["forbidden-origin"].request(host.authority))
        answer.sock.close()
        if answer.status == 403:
            return
        assert answer.status == 503 and time.monotonic() < deadline, f"{host.name}: {answer}"
        gevent.sleep(0.05)  # the TestClient's server runs in this thread's hub


# -- the table ----------------------------------------------------------------------------


@pytest.mark.parametrize("row", list(ROWS))
def test_upgrade_table(host: Host, row: str) -> None:
    expected, request, says = ROWS[row]
    held: list[Answer] = []
    unread: dict[int, bytes] = {}  # per held connection: what was read past its echo
    try:
        if row == "second-connection":
            first = send_request(host, request(host.authority))
            held.append(first)
            assert first.status == 101, f"{host.name}: the first connection was refused:\n{first}"
            unread[id(first)] = check_open(first)  # open, and kept open for the second upgrade
        answer = send_request(host, request(host.authority))
        held.append(answer)
        assert answer.status == expected, f"{host.name} answered {row} with:\n{answer}"
        assert says in answer.body, f"{host.name}: not our refusal:\n{answer}"
        if answer.status == 101:
            unread[id(answer)] = check_open(answer)
        for opened in held:
            if opened.status == 101:
                close(opened, unread[id(opened)])
    finally:
        for opened in held:
            opened.sock.close()
    if any(opened.status == 101 for opened in held):
        wait_until_released(host)  # the next row starts with no connection of ours held
