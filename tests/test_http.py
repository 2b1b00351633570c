"""The upgrade request: parsing and checks, without sockets."""

from __future__ import annotations

import pytest

from ignitia_sync import HandshakeError
from ignitia_sync.http import RequestHeadReader, accept_response, error_response, websocket_key
from tests.wire import handshake_bytes


def parse(data: bytes):
    return RequestHeadReader(16384, ("10.0.0.1", 5)).feed(data)


def test_request_fields():
    request = parse(handshake_bytes("/chat%20room?x=1&x=2&y=", "X-Test: a\r\nx-test: b\r\n"))
    assert request.path == "/chat room" and request.target == "/chat%20room?x=1&x=2&y="
    assert request.query == {"x": "1", "y": ""}
    assert request.headers["X-TEST"] == "a, b"
    assert request.headers.get_all("x-test") == ["a", "b"]
    assert request.remote_address == ("10.0.0.1", 5)


def test_accept_key_of_rfc_6455_example():
    request = parse(handshake_bytes(key="dGhlIHNhbXBsZSBub25jZQ=="))
    assert websocket_key(request) == "dGhlIHNhbXBsZSBub25jZQ=="
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in accept_response(
        "dGhlIHNhbXBsZSBub25jZQ==", None, None
    )


def test_head_arriving_in_pieces_and_trailing_data():
    reader = RequestHeadReader(16384)
    data = handshake_bytes() + b"\x81\x80"
    assert reader.feed(data[:10]) is None
    assert reader.feed(data[10:]) is not None
    assert reader.trailing_data == b"\x81\x80"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (handshake_bytes().replace(b"Upgrade: websocket", b"Upgrade: h2c"), 426),
        (handshake_bytes().replace(b"Connection: Upgrade", b"Connection: keep-alive"), 426),
        (handshake_bytes(version="13\r\nSec-WebSocket-Version: 13"), 426),
        (handshake_bytes(key="c2hvcnQ="), 400),
    ],
)
def test_upgrade_checks(data, status):
    with pytest.raises(HandshakeError) as info:
        websocket_key(parse(data))
    assert info.value.status == status


def test_connection_header_with_several_tokens_is_accepted():
    request = parse(handshake_bytes().replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"))
    assert websocket_key(request)


def test_oversized_head_is_431_even_when_complete():
    with pytest.raises(HandshakeError) as info:
        RequestHeadReader(1024).feed(handshake_bytes(extra="X-Big: " + "a" * 2000 + "\r\n"))
    assert info.value.status == 431


def test_error_response_is_complete():
    data = error_response(426, "use websocket", (("Upgrade", "websocket"),))
    head, body = data.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required")
    assert b"Content-Length: 14" in head and body == b"use websocket\n"
