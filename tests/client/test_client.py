"""The blocking client against real servers: ours, websockets' asyncio server, Node's ws.

Every server runs apart from the client (its own thread and hub, or its own process); the
client runs in the test's thread, which is not monkey-patched, as in a plain script.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from ignitia_sync import CloseFrame, HandshakeError, InvalidHandshake, Message, Router, WebSocketConnection
from ignitia_sync.client import Backoff, connect, parse_url, reconnecting
from tests.apps import echo, issue_certificate
from tests.conftest import url
from tests.subprocess_server import ROOT, free_port, running

NODE_MODULES = os.path.join(ROOT, "tests", "benchmarks", "node_modules")


def close_with(ws: WebSocketConnection) -> None:
    code, _, reason = ws.recv().data.partition(" ")  # type: ignore[union-attr]
    ws.close(int(code), reason)
    for _ in ws:
        pass


def describe(ws: WebSocketConnection) -> None:
    ws.send_json({"subprotocol": ws.subprotocol, "origin": ws.request.headers.get("origin"),
                  "query": dict(ws.request.query), "host": ws.request.headers.get("host"),
                  "authorization": ws.request.headers.get("authorization")})


def app() -> Router:
    router = Router()
    router.websocket("/echo", echo, subprotocols=["chat.v2", "chat.v1"])
    router.websocket("/close", close_with)
    router.websocket("/describe", describe, subprotocols=["chat.v1"])
    return router


# -- against our own server ------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_text_binary_and_a_1_mib_message_both_ways(serve, compression):
    server = serve(app())
    big = os.urandom(1 << 20)
    with connect(url(server, "/echo"), compression=compression, max_message_size=2 << 20) as ws:
        assert ("permessage-deflate" in ws.response_headers.get("sec-websocket-extensions", "")) == bool(compression)
        ws.send_text("héllo")
        assert ws.recv(timeout=5) == Message.text("héllo")
        ws.send_bytes(b"\x00\xff")
        assert ws.recv(timeout=5) == Message.binary(b"\x00\xff")
        ws.send_bytes(big)
        assert ws.recv(timeout=10).data == big
        ws.send_batch([Message.text(str(n)) for n in range(100)])
        assert [ws.recv(timeout=5).data for _ in range(100)] == [str(n) for n in range(100)]
    assert ws.close_code == 1000 and ws.closed


def test_subprotocol_headers_and_query_reach_the_server(serve):
    server = serve(app())
    with connect(url(server, "/describe?room=a%20b"), subprotocols=["chat.v9", "chat.v1"],
                 headers={"Origin": "https://app.example"}) as ws:
        assert ws.subprotocol == "chat.v1"
        assert ws.recv_json(timeout=5) == {"subprotocol": "chat.v1", "origin": "https://app.example",
                                           "query": {"room": "a b"}, "host": f"127.0.0.1:{server.address[1]}",
                                           "authorization": None}


@pytest.mark.parametrize("code", [1000, 1001, 1008, 4000])
def test_the_servers_close_code_and_reason_reach_the_client(serve, code):
    server = serve(app())
    ws = connect(url(server, "/close"))
    ws.send_text(f"{code} done here")
    closing = ws.recv(timeout=5)
    assert closing == Message.close_with_reason(code, "done here")
    assert ws.recv(timeout=5) is None
    assert (ws.close_code, ws.close_reason) == (code, "done here")


def test_a_message_over_the_clients_limit_fails_with_1009(serve):
    server = serve(app())
    with connect(url(server, "/echo"), max_message_size=1000) as ws:
        ws.send_bytes(b"x" * 2000)  # the server accepts it; its echo is too big for us
        assert ws.recv(timeout=5) is None
        assert ws.close_code == 1009


def test_a_refused_upgrade_raises_with_status_and_body(serve):
    server = serve(app())
    with pytest.raises(HandshakeError) as refused:
        connect(url(server, "/nowhere"))
    assert refused.value.status == 404 and "no WebSocket route" in refused.value.body


@pytest.fixture
def tls_server(serve, tmp_path) -> tuple[int, ssl.SSLContext]:
    """Our server with a certificate for ``localhost`` from a test CA; its port, and a context trusting that CA."""
    certificate = issue_certificate(tmp_path, "localhost")  # not 127.0.0.1: a test connects to that for a wrong name
    server = serve(app(), certfile=certificate.cert_file, keyfile=certificate.key_file)
    return server.address[1], certificate.client_context()


def test_tls_with_a_test_ca_checks_the_certificate_and_the_host_name(tls_server):
    port, trusting = tls_server
    with connect(f"wss://localhost:{port}/echo", ssl=trusting) as ws:
        ws.send_text("over TLS")
        assert ws.recv(timeout=5) == Message.text("over TLS")
    with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs do not know ours
        connect(f"wss://localhost:{port}/echo")
    with pytest.raises(ssl.SSLCertVerificationError):  # right CA, wrong name
        connect(f"wss://127.0.0.1:{port}/echo", ssl=trusting)


def test_the_client_answers_pings_and_pings_itself(serve):
    pinged = []

    def ping_then_report(ws: WebSocketConnection) -> None:
        ws.ping(b"are you there")
        while (message := ws.recv(timeout=5)) is not None:
            if isinstance(message, Message.Pong):
                ws.send_text(f"pong {message.data.decode()}")
            elif isinstance(message, Message.Ping):
                pinged.append(message.data)

    router = Router()
    router.websocket("/ping", ping_then_report, ping_interval=None)
    server = serve(router)
    with connect(url(server, "/ping"), ping_interval=0.2) as ws:
        assert next(m for m in ws if isinstance(m, Message.Text)) == Message.text("pong are you there")
        deadline = time.monotonic() + 10
        while (ws.latency is None or not pinged) and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                ws.recv(timeout=0.1)
        assert ws.latency is not None and pinged


def test_a_client_in_another_thread_of_a_program_that_does_not_patch(serve):
    server = serve(app())
    results: list[object] = []

    def worker() -> None:
        with connect(url(server, "/echo")) as ws:
            ws.send_text("from a thread")
            results.append(ws.recv(timeout=5))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [Message.text("from a thread")] * 3


def test_a_client_in_a_monkey_patched_program(serve):
    server = serve(app())
    script = textwrap.dedent(f"""
        from gevent import monkey; monkey.patch_all()
        import gevent, time
        from ignitia_sync.client import connect
        def one(n):
            with connect({url(server, "/echo")!r}) as ws:
                time.sleep(0.05)  # patched: the other greenlets run meanwhile
                ws.send_text(str(n))
                return ws.recv(timeout=5).data
        print(sorted(gevent.joinall([gevent.spawn(one, n) for n in range(5)], raise_error=True) and
                     [g.value for g in gevent.joinall([gevent.spawn(one, n) for n in range(5)])]))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "['0', '1', '2', '3', '4']", done.stderr


# -- the handshake, checked strictly --------------------------------------------------------


@contextlib.contextmanager
def raw_server(answers: list[bytes], hold: float = 0.1, delay: float = 0.0) -> Iterator[int]:
    """A TCP server that reads one request head per connection, answers the next bytes, and
    keeps the connection ``hold`` seconds (reading nothing more, answering nothing)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_all() -> None:
        for answer in answers:
            conn, _ = listener.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                key = next(line.split(b": ")[1] for line in head.split(b"\r\n")
                           if line.lower().startswith(b"sec-websocket-key"))
                from wsproto.utilities import generate_accept_token
                time.sleep(delay)
                conn.sendall(answer.replace(b"{accept}", generate_accept_token(key)))
                time.sleep(hold)

    thread = threading.Thread(target=serve_all, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()


UPGRADE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"


@pytest.mark.parametrize(("answer", "complaint"), [
    (UPGRADE + b"Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", "Sec-WebSocket-Accept"),
    (UPGRADE + b"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: evil\r\n\r\n", "subprotocol"),
    (UPGRADE + b"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: x-unknown\r\n\r\n", "extension"),
    (UPGRADE + b"Sec-WebSocket-Accept: {accept}\r\n"
     b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n", "permessage-deflate"),
    (b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {accept}\r\n\r\n", "Upgrade"),
    (b"garbage\r\n\r\n", "invalid HTTP"),
])
def test_a_bad_answer_is_refused(answer, complaint):
    with raw_server([answer]) as port, pytest.raises(InvalidHandshake, match=complaint):
        connect(f"ws://127.0.0.1:{port}/", subprotocols=["chat"], open_timeout=5)


def test_an_extension_is_refused_when_we_offered_none():
    answer = UPGRADE + b"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    with raw_server([answer]) as port, pytest.raises(InvalidHandshake, match="extension"):
        connect(f"ws://127.0.0.1:{port}/", compression=None, open_timeout=5)


def test_a_silent_server_hits_open_timeout():
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, pytest.raises(TimeoutError):
        connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", open_timeout=0.5)


def test_redirects_are_followed_a_bounded_number_of_times(serve):
    server = serve(app())
    target = url(server, "/echo")
    with raw_server([b"HTTP/1.1 302 Found\r\nLocation: " + target.encode() + b"\r\nContent-Length: 0\r\n\r\n"]) as port:
        with connect(f"ws://127.0.0.1:{port}/old") as ws:
            ws.send_text("redirected")
            assert ws.recv(timeout=5) == Message.text("redirected")
    loop = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"
    with raw_server([loop] * 3) as port, pytest.raises(InvalidHandshake, match="redirects"):
        connect(f"ws://127.0.0.1:{port}/", max_redirects=2)


def test_a_redirect_from_wss_to_ws_is_refused():
    from ignitia_sync.client.url import _follow
    from ignitia_sync.sansio.client_handshake import Redirect

    refusal = HandshakeError(302, "")
    assert _follow("ws://a/x", Redirect(302, "/y", refusal)) == "ws://a/y"
    assert _follow("wss://a/x", Redirect(301, "https://b/z", refusal)) == "wss://b/z"
    with pytest.raises(InvalidHandshake, match="insecure"):
        _follow("wss://a/x", Redirect(302, "http://a/y", refusal))


def test_urls():
    assert parse_url("ws://[::1]:8080/a?b=1")[:4] == (False, "::1", 8080, "/a?b=1")
    assert parse_url("ws://example.com").host_header == "example.com"
    assert parse_url("wss://example.com:8443/").host_header == "example.com:8443"
    for bad in ("http://example.com/", "ws:///nohost", "ws://user:secret@example.com/"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_header_injection_and_handshake_headers_are_refused(serve):
    server = serve(app())
    with pytest.raises(ValueError):
        connect(url(server, "/echo"), headers={"X-Evil": "a\r\nInjected: 1"})
    with pytest.raises(ValueError, match="sec-websocket-protocol"):
        connect(url(server, "/echo"), headers={"Sec-WebSocket-Protocol": "chat.v1"})
    with connect(url(server, "/describe"), headers={"Host": "app.example"}) as ws:  # replaces ours
        assert ws.recv_json(timeout=5)["host"] == "app.example"


# -- through an HTTP proxy, over a Unix socket -------------------------------------------------


@contextlib.contextmanager
def connect_proxy() -> Iterator[tuple[int, list[bytes]]]:
    """A minimal HTTP CONNECT proxy on real sockets (records each CONNECT line)."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def serve_one() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                head = b""
                while b"\r\n\r\n" not in head:
                    head += client.recv(4096)
                line = head.split(b"\r\n")[0]
                seen.append(line + b" auth" * (b"Proxy-Authorization: Basic" in head))
                host, port = line.split()[1].rsplit(b":", 1)
                upstream = socket.create_connection((host.decode(), int(port)))
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
                threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve_one, daemon=True).start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        listener.close()


def test_through_an_http_connect_proxy(serve, monkeypatch):
    server = serve(app())
    with connect_proxy() as (proxy_port, seen):
        with connect(url(server, "/echo"), proxy=f"http://user:pw@127.0.0.1:{proxy_port}") as ws:
            ws.send_text("tunnelled")
            assert ws.recv(timeout=5) == Message.text("tunnelled")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.setenv("no_proxy", "")
        with connect(url(server, "/echo"), proxy=True) as ws:
            ws.send_text("from the environment")
            assert ws.recv(timeout=5) == Message.text("from the environment")
    port = server.address[1]
    assert seen == [f"CONNECT 127.0.0.1:{port} HTTP/1.1 auth".encode(), f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()]


def test_over_a_unix_socket_to_websockets_server(tmp_path):
    from websockets.sync.server import unix_serve

    path = str(tmp_path / "app.sock")

    def handler(peer) -> None:  # websockets' sync connection
        for message in peer:
            peer.send(f"{peer.request.path}: {message}")

    with unix_serve(handler, path) as unix_server:
        threading.Thread(target=unix_server.serve_forever, daemon=True).start()
        with connect(f"ws+unix://{path}:/chat?x=1") as ws:
            ws.send_text("hi")
            assert ws.recv(timeout=5) == Message.text("/chat?x=1: hi")
        unix_server.shutdown()


# -- against independent servers -------------------------------------------------------------


WEBSOCKETS_SERVER = """
import asyncio, logging, sys
from websockets.asyncio.server import serve

# The readiness probe (a TCP connect, then close) would be logged as a failed handshake.
logging.getLogger("websockets.server").setLevel(logging.CRITICAL)

async def handler(ws):
    if ws.request.path == "/close":
        await ws.close(4001, "bye from websockets")
        return
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), subprotocols=["chat.v1"], max_size=2**21) as server:
        await server.serve_forever()

asyncio.run(main())
"""

NODE_SERVER = """
const { WebSocketServer } = require("ws");
const server = new WebSocketServer({ host: "127.0.0.1", port: Number(process.argv[2]),
  perMessageDeflate: true, maxPayload: 2 ** 21,
  handleProtocols: (offered) => (offered.has("chat.v1") ? "chat.v1" : false) });
server.on("connection", (ws, request) => {
  if (request.url === "/close") { ws.close(4002, "bye from node"); return; }
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
"""


@pytest.fixture(params=["websockets", "node-ws"])
def independent_server(request, tmp_path) -> Iterator[str]:
    port = free_port()
    if request.param == "websockets":
        command = [sys.executable, "-c", WEBSOCKETS_SERVER, str(port)]
        env = {}
    else:
        node = shutil.which("node")
        assert node is not None and os.path.isdir(NODE_MODULES), "node and tests/benchmarks/node_modules (npm ci) are needed"
        script = tmp_path / "server.js"
        script.write_text(NODE_SERVER)
        command, env = [node, str(script), str(port)], {"NODE_PATH": NODE_MODULES}
    with running(command, port, env):
        yield f"ws://127.0.0.1:{port}"


@pytest.mark.parametrize("compression", ["deflate", None])
def test_interop_with_an_independent_server(independent_server, compression):
    big = os.urandom(1 << 20)
    with connect(independent_server + "/", subprotocols=["chat.v1"], compression=compression,
                 max_message_size=2 << 20) as ws:
        assert ws.subprotocol == "chat.v1"
        assert ("permessage-deflate" in ws.response_headers.get("sec-websocket-extensions", "")) == bool(compression)
        ws.send_text("hello " * 100)
        assert ws.recv(timeout=5) == Message.text("hello " * 100)
        ws.send_bytes(big)
        assert ws.recv(timeout=10) == Message.binary(big)
        for n in range(50):
            ws.send_text(f"#{n}")
        assert [ws.recv(timeout=5).data for _ in range(50)] == [f"#{n}" for n in range(50)]
    assert ws.close_code == 1000


def test_an_independent_servers_close_code_reaches_the_client(independent_server, request):
    code, reason = {"websockets": (4001, "bye from websockets"), "node-ws": (4002, "bye from node")}[
        request.node.callspec.params["independent_server"]]  # what each server's /close sends
    ws = connect(independent_server + "/close", subprotocols=["chat.v1"])
    assert ws.recv(timeout=5) == Message.Close(CloseFrame(code, reason))
    assert ws.recv(timeout=5) is None
    assert (ws.close_code, ws.close_reason) == (code, reason)


# -- reconnecting ------------------------------------------------------------------------------


RESTARTABLE = "tests.client_servers:router"


def test_reconnecting_survives_a_server_restart_and_stops_on_403():
    port = free_port()
    command = [sys.executable, "-m", "ignitia_sync", RESTARTABLE, "--port", str(port)]
    received: list[str] = []
    restarted: list[subprocess.Popen[bytes]] = []

    def restart() -> None:
        restarted.append(subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}))

    loop = reconnecting(f"ws://127.0.0.1:{port}/feed", backoff=Backoff(first=0.5, factor=2.0, cap=1.0),
                        open_timeout=2)
    with running(command, port) as first:
        for ws in loop:
            ws.send_text("hello")
            received.append(ws.recv(timeout=5).data)
            if loop.connections == 1:
                first.terminate()  # the server stops: 1001, then nobody listens for a while
                assert ws.recv(timeout=10) == Message.close_with_reason(1001, "Server shutdown")
                first.wait(10)
                threading.Timer(1.5, restart).start()
            else:
                loop.stop()
    try:
        assert received == ["feed: hello", "feed: hello"]
        assert loop.connections == 2 and loop.attempts >= 3  # refused while the server was down
        assert 0 <= loop.last_delay <= Backoff(first=0.5, factor=2.0, cap=1.0).ceiling(loop.attempts)
    finally:
        for process in restarted:
            process.terminate()
            process.wait(10)
    with running(command, port):
        forbidden = reconnecting(f"ws://127.0.0.1:{port}/forbidden", backoff=Backoff(first=0.1))
        with pytest.raises(HandshakeError) as refused:
            for _ in forbidden:
                pytest.fail("a 403 must not yield a connection")
        assert refused.value.status == 403 and forbidden.attempts == 1


def test_the_waits_follow_the_backoff():
    """Against a port nobody listens on: each wait is drawn in 0..ceiling(n) (measured, not timed)."""
    port = free_port()
    backoff = Backoff(first=0.05, factor=2.0, cap=0.2)
    loop = reconnecting(f"ws://127.0.0.1:{port}/", backoff=backoff, open_timeout=1)
    delays: list[float] = []
    original = backoff.delay

    attempts: list[int] = []
    started: list[float] = []

    def watch(attempt: int) -> float:
        attempts.append(attempt)
        started.append(time.monotonic())
        delays.append(value := original(attempt))
        if len(delays) == 6:
            loop.stop()
        return value

    object.__setattr__(backoff, "delay", watch)
    for _ in loop:
        pytest.fail("nobody listens: no connection")
    assert attempts == [0, 1, 2, 3, 4, 5] and loop.attempts == 6  # the n-th retry in a row draws from ceiling(n)
    assert all(0 <= d <= backoff.ceiling(n) for n, d in enumerate(delays))
    waited = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert all(gap >= delay for gap, delay in zip(waited, delays[:-1], strict=True))  # each wait lasted what was drawn
    assert isinstance(loop.last_error, ConnectionRefusedError)


def test_stop_from_another_thread_ends_a_blocked_loop(serve):
    server = serve(app())
    loop = reconnecting(url(server, "/echo"))
    threading.Timer(0.3, loop.stop).start()
    seen = []
    for ws in loop:
        seen.extend(ws)  # blocks until stop() closes it: the server's answer, then the end
    assert seen == [Message.close_with_reason(1001, "")] and loop.connections == 1


# -- the examples ------------------------------------------------------------------------------


def test_the_echo_client_example(serve):
    server = serve(app())
    done = subprocess.run([sys.executable, "examples/client.py", url(server, "/echo"), "one", "two"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["Text(data='one')", "Text(data='two')"], done.stderr


def test_the_feed_consumer_example_survives_a_server_restart():
    port = free_port()
    server = [sys.executable, "-m", "ignitia_sync", RESTARTABLE, "--port", str(port)]
    consumer = subprocess.Popen([sys.executable, "examples/feed_consumer.py", f"ws://127.0.0.1:{port}/ticks"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": ROOT})
    assert consumer.stdout is not None
    try:
        for connection in (1, 2):
            with running(server, port):
                for _ in range(500):  # the ticks of the last connection, then this one's
                    if consumer.stdout.readline().strip() == f"connected (connection {connection})":
                        break
                lines = [consumer.stdout.readline().strip() for _ in range(3)]
                assert lines == ["tick 1", "tick 2", "tick 3"]  # subscribed again
        consumer.send_signal(signal.SIGTERM)
        rest, errors = consumer.communicate(timeout=20)
        assert consumer.returncode == 0 and rest.splitlines()[-1] == "stopped", errors
        assert "reconnecting to ws://127.0.0.1" in errors and "Traceback" not in errors
    finally:
        consumer.kill()


def test_a_server_that_stops_answering_pings_is_failed_with_1011():
    """The server's TCP stays up but it never answers: our keepalive gives up after ping_timeout."""
    with raw_server([UPGRADE + b"Sec-WebSocket-Accept: {accept}\r\n\r\n"], hold=10) as port:
        ws = connect(f"ws://127.0.0.1:{port}/", compression=None, ping_interval=0.1, ping_timeout=0.3)
        assert ws.recv(timeout=10) is None
        assert ws.close_code == 1011 and ws.close_reason == "keepalive ping timeout"


def test_reconnecting_retries_a_503_then_connects(serve):
    server = serve(app())
    busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nRetry-After: 1\r\n\r\nbusy"
    redirect = b"HTTP/1.1 302 Found\r\nLocation: " + url(server, "/echo").encode() + b"\r\nContent-Length: 0\r\n\r\n"
    with raw_server([busy, busy, redirect]) as port:
        loop = reconnecting(f"ws://127.0.0.1:{port}/", backoff=Backoff(first=0.05, cap=0.1))
        for ws in loop:
            ws.send_text("at last")
            assert ws.recv(timeout=5) == Message.text("at last")
            loop.stop()
    assert loop.attempts == 3 and loop.connections == 1
    assert isinstance(loop.last_error, HandshakeError) and loop.last_error.status == 503


def test_stop_while_connecting_ends_the_loop_and_closes_the_new_connection():
    answer = UPGRADE + b"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    with raw_server([answer], hold=5, delay=1.0) as port:
        loop = reconnecting(f"ws://127.0.0.1:{port}/", compression=None, close_timeout=0.5)
        threading.Timer(0.3, loop.stop).start()  # while the handshake waits for its answer
        for _ in loop:
            pytest.fail("a stopped loop yields no connection")
    assert loop.attempts == 1 and loop.connections == 0


def test_redirects_go_to_ws_urls_only_and_credentials_stay_with_their_origin(serve):
    server = serve(app())
    target = url(server, "/describe").encode()
    unix = b"HTTP/1.1 302 Found\r\nLocation: ws+unix:///var/run/docker.sock:/x\r\nContent-Length: 0\r\n\r\n"
    with raw_server([unix]) as port, pytest.raises(InvalidHandshake, match="redirect") as refused:
        connect(f"ws://127.0.0.1:{port}/")
    assert not refused.value.retryable
    moved = b"HTTP/1.1 301 Moved\r\nLocation: " + target + b"\r\nContent-Length: 0\r\n\r\n"
    with raw_server([moved]) as port:  # another port: another origin
        with connect(f"ws://127.0.0.1:{port}/", headers={"Authorization": "Bearer secret", "Origin": "https://o"}) as ws:
            seen = ws.recv_json(timeout=5)
    # What the server received, not the client's own record of what it sent.
    assert (seen["origin"], seen["authorization"]) == ("https://o", None)


def test_subprotocol_names_must_be_tokens(serve):
    server = serve(app())
    with pytest.raises(ValueError, match="token"):
        connect(url(server, "/echo"), subprotocols=["chat.v1, evil"])


def test_a_servers_client_max_window_bits_8_is_a_clear_invalid_handshake():
    answer = UPGRADE + (b"Sec-WebSocket-Accept: {accept}\r\n"
                        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=8\r\n\r\n")
    with raw_server([answer]) as port, pytest.raises(InvalidHandshake, match="client_max_window_bits=8"):
        connect(f"ws://127.0.0.1:{port}/")


def test_a_given_socket_with_a_wss_url_gets_tls(tls_server):
    port, trusting = tls_server
    plain = socket.create_connection(("127.0.0.1", port))
    with connect(f"wss://localhost:{port}/echo", sock=plain, ssl=trusting) as ws:
        ws.send_text("wrapped")
        assert ws.recv(timeout=5) == Message.text("wrapped")
