"""What many tests serve: the echo handler (and a router with it at ``/echo``) and a TLS certificate;
and two checks of an echoing client's connection: ``still_open`` and ``closed_with``.

``echo`` sends every text and binary message back, in order, until the peer closes; ``ECHO``
routes ``/echo`` to it. ``issue_certificate(folder, *names)`` writes a certificate for ``names``
from a throwaway trustme authority (the ``certificate`` fixture of ``tests/conftest.py`` is one for
127.0.0.1 and localhost).
"""

from __future__ import annotations

import dataclasses
import pathlib
import ssl

import pytest
import trustme
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from ignitia_sync import Message, Router, WebSocketConnection


def echo(ws: WebSocketConnection) -> None:
    """Send every text and binary message back until the peer closes."""
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


ECHO = Router().websocket("/echo", echo)


def still_open(client: ClientConnection) -> None:
    """The connection still echoes (a server handler that sends back what it gets)."""
    client.send("still here?")
    assert client.recv(timeout=10) == "still here?"


def closed_with(client: ClientConnection) -> tuple[int, str]:
    """The (code, reason) of the Close the server sent next."""
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A certificate from a throwaway authority: its files for a server, a client context that trusts it."""

    authority: trustme.CA
    cert: trustme.LeafCert
    cert_file: str
    key_file: str

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the authority (and only it)."""
        context = ssl.create_default_context()
        self.authority.configure_trust(context)
        return context

    def echo_over_tls(self, address: tuple[str, int], text: str, path: str = "/echo") -> str:
        """Send ``text`` to a ``wss://`` echo route and return the answer.

        websocket-client, not websockets' sync client: that one reads the TLS object from a
        thread while another writes it, which Python's ``ssl`` does not support; its handshake
        hung for 10 s once in CI (python-websockets/websockets#1648 shows the same hang).
        """
        import websocket  # websocket-client: one thread does everything

        host, port = address
        ws = websocket.create_connection(f"wss://{host}:{port}{path}", timeout=10,
                                         sslopt={"context": self.client_context()})
        try:
            ws.send(text)
            answer = ws.recv()
        finally:
            ws.close()
        assert isinstance(answer, str)
        return answer


def issue_certificate(folder: pathlib.Path, *names: str) -> Certificate:
    """A certificate for ``names`` from a new authority, written to ``folder``/cert.pem and key.pem."""
    authority = trustme.CA()
    cert = authority.issue_cert(*names)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    return Certificate(authority, cert, str(cert_file), str(key_file))
