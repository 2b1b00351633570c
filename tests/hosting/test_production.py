"""Keepalive, idle timeout, graceful drain, TLS, slowloris, stats and access logs."""

from __future__ import annotations

import socket
import ssl

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ignitia_sync import Message, Router, Server, WebSocketConnection
from tests.conftest import url
from tests.waiting import wait_for
from tests.wire import Peer, frame, handshake_bytes


def echo(ws: WebSocketConnection) -> None:
    for message in ws:
        if isinstance(message, Message.Text):
            ws.send_text(message.data if message.data != "latency?" else f"{ws.latency}")


ECHO = Router().websocket("/echo", echo)


def test_a_peer_that_stops_answering_pings_is_dropped_with_1011(serve):
    server = serve(ECHO, ping_interval=0.2, ping_timeout=0.3)
    peer = Peer(server.address)
    peer.upgrade("/echo")
    opcode, payload, _ = peer.read_frame()
    assert opcode == 0x9 and payload  # a keepalive ping, which we never answer
    assert peer.read_close() == (1011, "keepalive ping timeout")
    assert peer.at_eof()  # dropped at once, no closing handshake with a dead peer
    wait_for(lambda: not server.connections, "the connection gone")
    assert not server.connections and server.stats()["close_codes"] == {1011: 1}


def test_a_peer_that_answers_stays_and_latency_is_exposed(serve):
    server = serve(ECHO, ping_interval=0.1, ping_timeout=10)
    with connect(url(server, "/echo"), ping_interval=None) as ws:  # its pongs answer ours

        def latency() -> str:
            ws.send("latency?")
            return ws.recv(timeout=5)

        wait_for(lambda: latency() != "None", "a ping answered (the latency known)")
        assert 0 <= float(latency()) < 10


def test_idle_timeout_closes_quiet_connections_with_1001(serve):
    server = serve(ECHO, idle_timeout=0.3, ping_interval=None)
    with connect(url(server, "/echo")) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.protocol.close_rcvd.code == 1001 and ws.protocol.close_rcvd.reason == "idle timeout"


def test_drain_delivers_everything_queued_to_100_clients_before_1001():
    queued: list[int] = []

    def queue_up(ws: WebSocketConnection) -> None:
        ws.recv()
        for i in range(50):
            ws.send_nowait(Message.text(f"{i:02d}" + "z" * 2000))
        queued.append(1)
        for _ in ws:
            pass

    server = Server(Router().websocket("/q", queue_up), ("127.0.0.1", 0))
    server.start_in_thread()
    peers = []
    for _ in range(100):
        peer = Peer(server.address)
        peer.upgrade("/q")
        peer.send(frame(0x1, b"go"))
        peers.append(peer)
    wait_for(lambda: len(queued) == 100, "every handler to queue its 50 messages")
    server.stop(timeout=10)
    for peer in peers:
        got = []
        while True:
            opcode, payload, _ = peer.read_frame()
            if opcode == 8:
                assert payload[:2] == b"\x03\xe9" and payload[2:] == b"Server shutdown"
                break
            got.append(payload[:2])
        assert got == [f"{i:02d}".encode() for i in range(50)]


def test_tls_echo_with_a_certificate_made_in_the_test(serve, certificate):
    server = serve(ECHO, certfile=certificate.cert_file, keyfile=certificate.key_file)
    assert certificate.echo_over_tls(server.address, "secret") == "secret"
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.cert.configure_cert(server_context)
    server = serve(ECHO, ssl_context=server_context)
    assert certificate.echo_over_tls(server.address, "again") == "again"


def test_tls_reading_pauses_and_resumes_without_losing_order(serve, certificate):
    """TLS connections are read by a greenlet (plain ones by an io watcher): same guarantees."""
    import websocket  # websocket-client: one thread, no reader thread sharing the TLS object

    server = serve(ECHO, certfile=certificate.cert_file, keyfile=certificate.key_file, max_queue=2)
    host, port = server.address
    ws = websocket.create_connection(f"wss://{host}:{port}/echo", timeout=10,
                                     sslopt={"context": certificate.client_context()})
    try:
        sent = [f"{i:04d}" + "x" * 4000 for i in range(300)]
        received: list[str] = []
        for start in range(0, len(sent), 30):  # 30 at a time, past max_queue: reading pauses and resumes
            for text in sent[start : start + 30]:
                ws.send(text)
            received += [ws.recv() for _ in range(30)]
        assert received == sent
        ws.ping(b"still there?")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert (opcode, frame.data) == (websocket.ABNF.OPCODE_PONG, b"still there?")
    finally:
        ws.close()


def test_slowloris_does_not_stop_new_clients(serve):
    # One address here plays attacker and user; the per-address cap is tested in test_hardening.
    server = serve(ECHO, handshake_timeout=30, max_pending_handshakes_per_ip=1000)
    loris = []
    for _ in range(500):
        sock = socket.create_connection(server.address)
        sock.sendall(handshake_bytes("/echo")[:40])  # half a request head, then silence
        loris.append(sock)
    with connect(url(server, "/echo"), open_timeout=10) as ws:
        ws.send("served")
        assert ws.recv(timeout=10) == "served"
    for sock in loris:
        sock.close()


def test_stats_and_one_access_line_per_connection(serve, caplog):
    server = serve(ECHO)
    with connect(url(server, "/echo?x=1")) as ws:
        ws.send("hello")
        ws.recv()
        live = server.stats()
        assert live["open_connections"] == 1 and live["messages_in"] >= 1
    # A connection leaves the registry when its handler returns and is counted as closed once
    # its socket is: wait for the latter.
    wait_for(lambda: server.stats()["close_codes"], "the close counted")
    stats = server.stats()
    assert stats["open_connections"] == 0
    assert stats["total_connections"] == 1 and stats["close_codes"] == {1000: 1}
    assert stats["messages_in"] >= 2 and stats["messages_out"] == 1 and stats["bytes_out"] > 5
    lines = [r.getMessage() for r in caplog.records if r.name == "ignitia_sync.access"]
    # The path only: query strings carry tokens, and they never reach a log line.
    assert len(lines) == 1 and '"GET /echo" 101' in lines[0] and "close=1000" in lines[0]
    assert "x=1" not in lines[0]
    assert "hello" not in lines[0]  # never payloads


def test_handshakes_during_shutdown_get_503():
    server = Server(ECHO, ("127.0.0.1", 0), shutdown_timeout=2)
    server.start_in_thread()
    slow = Peer(server.address)
    slow.send(handshake_bytes("/echo")[:30])
    with connect(url(server, "/echo")) as ws:
        ws.send("x")
        ws.recv()
        import threading

        stopper = threading.Thread(target=server.stop)
        stopper.start()
        wait_for(server.shutdown_event.is_set, "stop() to begin")
        slow.send(handshake_bytes("/echo")[30:])
        assert slow.read_head()[0] == 503
        stopper.join(10)


def test_tls_slowloris_is_bounded_by_handshake_timeout_and_seen_by_stop(serve, certificate):
    """S1: a client that opens TCP and never sends a ClientHello is dropped in time."""
    server = serve(ECHO, certfile=certificate.cert_file, keyfile=certificate.key_file, handshake_timeout=0.5,
                   max_pending_handshakes=3)
    silent = [socket.create_connection(server.address) for _ in range(3)]
    for sock in silent:
        sock.settimeout(30)  # generous: the server closes it after handshake_timeout, not never
        assert sock.recv(1024) == b""  # closed by the server: no ClientHello in time
        sock.close()
    assert certificate.echo_over_tls(server.address, "after") == "after"  # their places are free again
    assert server._tls is not None and server._tls.options & ssl.OP_NO_RENEGOTIATION


def test_control_characters_from_the_request_never_reach_a_log_line(serve, caplog):
    """S7: a %0a in the path would forge a log line."""
    server = serve(ECHO)
    peer = Peer(server.address)
    peer.send(handshake_bytes("/nowhere%0a2026-01-01%20FAKE%20admin%20logged%20in"))
    assert peer.read_head()[0] == 404
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("ignitia_sync")]
    refused = [line for line in lines if "refused" in line]
    assert refused and all("\n" not in line for line in lines)
    assert "\\n2026-01-01 FAKE admin logged in" in refused[0]


def test_tls_closing_handshake_while_the_writer_is_busy_ends_without_the_close_timer(serve, certificate, capfd):
    """The half-close must not pull the SSL object from under the reader greenlet."""

    def bulk(ws: WebSocketConnection) -> None:
        ws.recv()
        ws.send_nowait(Message.binary(b"x" * 5_000_000))
        for _message in ws:
            pass

    app = Router().websocket("/bulk", bulk)
    server = serve(app, certfile=certificate.cert_file, keyfile=certificate.key_file, close_timeout=30,
                   outbox_limit=50_000_000)
    context = certificate.client_context()
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(20)
    raw.connect(server.address)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(handshake_bytes("/bulk"))
    head = b""
    while b"\r\n\r\n" not in head:
        head += tls.recv(4096)
    tls.sendall(frame(0x1, b"go"))

    def writer_blocked() -> bool:
        return any(ws._transport._writer is not None and len(ws._transport._outbox) for ws in server.connections)

    wait_for(writer_blocked, "the server's writer to be blocked (we read nothing yet)")
    tls.sendall(frame(0x8, b"\x03\xe8"))
    while tls.recv(65536):  # everything, the Close answer, then the server's EOF
        pass
    tls.close()
    # accounted once its socket is closed; 15 s is far below close_timeout: the reader saw our FIN
    wait_for(lambda: server.stats()["close_codes"], "the close counted", timeout=15)
    assert server.stats()["open_connections"] == 0 and server.stats()["close_codes"] == {1000: 1}
    assert "Traceback" not in capfd.readouterr().err
