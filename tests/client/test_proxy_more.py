"""client/sockets.py's HTTP CONNECT tunnel: ``wss://`` through it, a 407 from the proxy, ``no_proxy``.

The proxy is real (a threaded CONNECT proxy on 127.0.0.1, below); the server is ours, with a
certificate for ``localhost`` from a trustme CA for ``wss://``.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from ignitia_sync import HandshakeError, Message, Router
from ignitia_sync.client import connect, reconnecting
from tests.conftest import url
from tests.waiting import wait_for


def echo(ws) -> None:
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


ROUTER = Router().websocket("/echo", echo)


class Proxy:
    """A CONNECT proxy: records each request head; with ``password`` set, answers 407 without it."""

    def __init__(self, password: str | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.password = password
        self.heads: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        self.heads.append(head)
        if self.password is not None:
            expected = b"Proxy-Authorization: Basic " + base64.b64encode(f"user:{self.password}".encode())
            if expected not in head.split(b"\r\n"):
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                               b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                client.close()
                return
        host, port = head.split(b"\r\n")[0].split()[1].rsplit(b":", 1)
        upstream = socket.create_connection((host.decode(), int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    made = Proxy()
    yield made
    made.close()


@pytest.fixture
def tls(serve, tmp_path) -> tuple[int, ssl.SSLContext]:
    """Our server with a certificate for ``localhost`` from a test CA: its port, and a context trusting that CA."""
    authority = trustme.CA()
    cert = authority.issue_cert("localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    server = serve(ROUTER, certfile=str(cert_file), keyfile=str(key_file))
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    return server.address[1], trusting


def test_wss_goes_through_the_tunnel_with_tls_end_to_end(tls, proxy):
    port, trusting = tls
    with connect(f"wss://localhost:{port}/echo", ssl=trusting, proxy=f"http://127.0.0.1:{proxy.port}") as ws:
        ws.send_text("tunnelled over TLS")
        assert ws.recv(timeout=5) == Message.text("tunnelled over TLS")
    request_line, *fields = proxy.heads[0].split(b"\r\n")
    assert request_line == f"CONNECT localhost:{port} HTTP/1.1".encode()  # the name, for the certificate check
    assert f"host: localhost:{port}".encode() in [field.lower() for field in fields]
    # The certificate is still checked through the tunnel: the proxy sees only TLS.
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(f"wss://localhost:{port}/echo", proxy=f"http://127.0.0.1:{proxy.port}")
    assert len(proxy.heads) == 2


def test_a_407_from_the_proxy_is_a_handshake_error_naming_the_proxy_and_is_not_retried(serve):
    server = serve(ROUTER)
    target = f"127.0.0.1:{server.address[1]}"
    guarded = Proxy(password="s3cret")
    try:
        with pytest.raises(HandshakeError) as refused:
            connect(url(server, "/echo"), proxy=f"http://127.0.0.1:{guarded.port}")
        assert refused.value.status == 407
        assert str(refused.value) == f"407: the proxy refused CONNECT to {target}"
        loop = reconnecting(url(server, "/echo"), proxy=f"http://user:wrong@127.0.0.1:{guarded.port}")
        with pytest.raises(HandshakeError) as again:
            for _ in loop:
                pytest.fail("a 407 must not yield a connection")
        assert again.value.status == 407 and loop.attempts == 1  # the credentials are wrong: no retry
        with connect(url(server, "/echo"), proxy=f"http://user:s3cret@127.0.0.1:{guarded.port}") as ws:
            ws.send_text("let in")
            assert ws.recv(timeout=5) == Message.text("let in")
    finally:
        guarded.close()
    assert len(guarded.heads) == 3
    wait_for(lambda: server.stats()["total_connections"] == 1, "the one connection counted")
    assert server.stats()["refused"] == {}  # the refused tunnels never reached the server


def test_no_proxy_bypasses_the_environments_proxy_for_the_hosts_it_names(serve, proxy, monkeypatch):
    server = serve(ROUTER)
    for name in ("ws_proxy", "wss_proxy", "https_proxy", "WS_PROXY", "WSS_PROXY", "HTTP_PROXY", "HTTPS_PROXY",
                 "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    with connect(url(server, "/echo"), proxy=True) as ws:
        ws.send_text("direct")
        assert ws.recv(timeout=5) == Message.text("direct")
    assert proxy.heads == []  # the host is in no_proxy: straight to the server
    monkeypatch.setenv("no_proxy", "example.com")
    with connect(url(server, "/echo"), proxy=True) as ws:
        ws.send_text("via the proxy")
        assert ws.recv(timeout=5) == Message.text("via the proxy")
    assert [head.split(b"\r\n")[0] for head in proxy.heads] == [f"CONNECT 127.0.0.1:{server.address[1]} HTTP/1.1".encode()]
    with connect(url(server, "/echo")) as ws:  # proxy=None by default: the environment is not read
        ws.send_text("default")
        assert ws.recv(timeout=5) == Message.text("default")
    assert len(proxy.heads) == 1
