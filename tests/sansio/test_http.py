"""The upgrade request: parsing and checks, without sockets."""

from __future__ import annotations

import string

import h11  # the oracle for the hand-written parser (wsproto depends on it)
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ignitia_sync import HandshakeError
from ignitia_sync.sansio.http import (
    Request,
    RequestHeadReader,
    accept_response,
    check_head,
    error_response,
    websocket_key,
)
from tests.wire import handshake_bytes

_FRAMING = {"host", "content-length", "transfer-encoding"}


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
    assert websocket_key(request) == "MDEyMzQ1Njc4OWFiY2RlZg=="


def test_oversized_head_is_431_even_when_complete():
    with pytest.raises(HandshakeError) as info:
        RequestHeadReader(1024).feed(handshake_bytes(extra="X-Big: " + "a" * 2000 + "\r\n"))
    assert info.value.status == 431


def test_error_response_is_complete():
    data = error_response(426, "use websocket", (("Upgrade", "websocket"),))
    head, body = data.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required")
    assert b"Content-Length: 14" in head and body == b"use websocket\n"


# -- the hand-written request-head parser ----------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400),  # obsolete line folding
        (b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n", 400),  # space before the colon
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n", 400),  # NUL in a value
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nX(y): z\r\n\r\n", 400),  # not a token
        (b"GET  /echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # two spaces
        (b"GET /echo\r\nHost: x\r\n\r\n", 400),  # HTTP/0.9 style
        (b"GET /e cho HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /echo HTTP/1.0\r\nHost: x\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 400),  # no Host
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ],
)
def test_malformed_heads_are_refused_with_a_precise_status(data, status):
    """What the server's parser refuses, or what every host's ``check_head`` then refuses."""
    with pytest.raises(HandshakeError) as info:
        check_head(parse(data), 16384)
    assert info.value.status == status


def test_check_head_refuses_a_head_over_the_limit_whatever_parsed_it():
    request = Request.from_environ({"HTTP_HOST": "x", "HTTP_X_PAD": "a" * 20000, "SERVER_PROTOCOL": "HTTP/1.1"})
    with pytest.raises(HandshakeError) as info:
        check_head(request, 16384)
    assert info.value.status == 431
    check_head(request, 32768)  # within a larger limit: no refusal


def test_a_wsgi_request_keeps_its_http_version_and_host():
    request = Request.from_environ({"SERVER_PROTOCOL": "HTTP/1.0", "HTTP_HOST": "x"})
    assert request.http_version == "1.0" and request.headers.get_all("host") == ["x"]
    with pytest.raises(HandshakeError) as info:
        check_head(request, 16384)
    assert info.value.status == 400


def test_lenient_where_rfc_9112_allows_it():
    request = parse(b"\r\n\r\nGET /a HTTP/1.1\nHost: x\nX-Space:   padded value \t\nContent-Length: 0\n\n")
    assert request.path == "/a"
    assert request.headers["x-space"] == "padded value"
    assert parse(b"GET /a HTTP/1.2\r\nHost: x\r\nEmpty:\r\n\r\n").headers["empty"] == ""


def test_head_fed_one_byte_at_a_time():
    reader = RequestHeadReader(16384)
    data = handshake_bytes("/slow?q=1") + b"\x88\x80"
    results = [reader.feed(data[i : i + 1]) for i in range(len(data) - 2)]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] is not None and results[-1].query == {"q": "1"}
    assert reader.trailing_data == b""


def test_an_incomplete_head_over_the_limit_is_431_before_it_ends():
    reader = RequestHeadReader(1024)
    assert reader.feed(b"GET / HTTP/1.1\r\n") is None
    with pytest.raises(HandshakeError) as info:
        reader.feed(b"X-Big: " + b"a" * 2000)
    assert info.value.status == 431


def test_a_closed_connection_before_the_head_ends_is_400():
    reader = RequestHeadReader(1024)
    reader.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HandshakeError) as info:
        reader.feed(b"")
    assert info.value.status == 400


_token = st.text(alphabet="!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits, min_size=1, max_size=12)
_value = st.text(alphabet=string.printable.strip() + " \t\x80\xe9", max_size=30).map(str.strip)
_target = st.text(alphabet=string.ascii_letters + string.digits + "/?&=%._~-", min_size=1, max_size=30).map(
    lambda t: "/" + t
)


@settings(max_examples=300, deadline=None)
@given(
    method=_token,
    target=_target,
    fields=st.lists(st.tuples(_token.filter(lambda n: n.lower() not in _FRAMING), _value), max_size=12),
    trailing=st.binary(max_size=8),
    cut=st.integers(min_value=1, max_value=400),
)
def test_the_parser_agrees_with_h11_on_valid_heads(method, target, fields, trailing, cut):
    """h11 was the parser before; on every valid head both give the same request."""
    fields = [("Host", "example.com"), *fields]
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
    data = head.encode("latin-1") + trailing
    reader = RequestHeadReader(16384)
    request = reader.feed(data[:cut]) if cut < len(data) else None
    if request is None:
        request = reader.feed(data[cut:] if cut < len(data) else data)
    else:  # the head ended within the first piece: only part of the trailing bytes came with it
        trailing = data[len(head) : cut]
    assert request is not None
    oracle = h11.Connection(h11.SERVER)
    oracle.receive_data(head.encode("latin-1"))
    event = oracle.next_event()
    assert isinstance(event, h11.Request)
    assert request.method == event.method.decode("latin-1")
    assert request.target == event.target.decode("latin-1")
    assert request.headers.raw_items() == [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers.raw_items()]
    assert reader.trailing_data == trailing


def test_more_than_128_header_lines_get_431():
    from ignitia_sync.sansio.http import RequestHeadReader

    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 128 + b"\r\n"
    with pytest.raises(HandshakeError) as info:
        RequestHeadReader(1 << 20).feed(head)
    assert info.value.status == 431


@pytest.mark.parametrize(
    "headers",
    [(("X-Next", "a\r\nSet-Cookie: evil=1"),), (("Bad Name", "x"),), (("X-Nul", "a\x00"),), (("X-Euro", "\u20ac"),)],
)
def test_a_refusal_cannot_split_the_response(headers):
    from ignitia_sync import Response

    with pytest.raises(ValueError):
        Response(403, "no", headers)


@pytest.mark.parametrize("status", [101, 200, 302, 600])
def test_a_refusal_is_a_4xx_or_5xx(status):
    from ignitia_sync import Response

    with pytest.raises(ValueError):
        Response(status, "no")
