"""sansio/http.py at its edges: every refusal's status, text and headers; the exact 101 and
refusal bytes; WSGI environs; cookies; trusted proxies; the head reader's boundaries."""

from __future__ import annotations

import pytest

from ignitia_sync import HandshakeError
from ignitia_sync.sansio.http import (
    Headers,
    Request,
    RequestHeadReader,
    Response,
    accept_response,
    check_head,
    check_header,
    client_ip,
    error_response,
    websocket_key,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = [
    ("Host", "h"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
]


def refusal(call) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    with pytest.raises(HandshakeError) as info:
        call()
    return info.value.status, info.value.body, info.value.headers


def request(headers, method="GET", **kwargs) -> Request:
    return Request(method, "/", {}, Headers(list(headers)), **kwargs)


# -- websocket_key and check_head: each refusal exactly ---------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        (
            "POST",
            [*UPGRADE, ("Sec-WebSocket-Key", KEY)],
            (405, "WebSocket upgrades use GET", (("Allow", "GET"),)),
        ),
        (
            "GET",
            [("Host", "h"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")],
            (
                426,
                "this resource speaks WebSocket only; send an Upgrade: websocket request",
                (("Upgrade", "websocket"), ("Connection", "Upgrade")),
            ),
        ),
        (
            "GET",
            [("Host", "h"), ("Upgrade", "websocket"), ("Connection", "keep-alive")],
            (
                426,
                "this resource speaks WebSocket only; send an Upgrade: websocket request",
                (("Upgrade", "websocket"), ("Connection", "Upgrade")),
            ),
        ),
        (
            "GET",
            [*UPGRADE[:3], ("Sec-WebSocket-Version", "8"), ("Sec-WebSocket-Key", KEY)],
            (
                426,
                "unsupported Sec-WebSocket-Version; this server speaks 13",
                (("Sec-WebSocket-Version", "13"),),
            ),
        ),
        (
            "GET",
            [*UPGRADE, ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", KEY)],
            (
                426,
                "unsupported Sec-WebSocket-Version; this server speaks 13",
                (("Sec-WebSocket-Version", "13"),),
            ),
        ),
        ("GET", UPGRADE, (400, "missing or repeated Sec-WebSocket-Key", ())),
        (
            "GET",
            [*UPGRADE, ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Key", KEY)],
            (400, "missing or repeated Sec-WebSocket-Key", ()),
        ),
        ("GET", [*UPGRADE, ("Sec-WebSocket-Key", "not base64!")], (400, "malformed Sec-WebSocket-Key", ())),
        ("GET", [*UPGRADE, ("Sec-WebSocket-Key", "AAAA")], (400, "malformed Sec-WebSocket-Key", ())),
    ],
)
def test_websocket_key_refusals(method, headers, expected):
    assert refusal(lambda: websocket_key(request(headers, method))) == expected


def test_websocket_key_reads_headers_in_any_case_and_tokens_in_lists():
    headers = [
        ("HOST", "h"),
        ("UPGRADE", "WebSocket"),
        ("CONNECTION", "Upgrade,keep-alive"),
        ("SEC-WEBSOCKET-VERSION", "13"),
        ("SEC-WEBSOCKET-KEY", f" {KEY} "),
    ]
    assert websocket_key(request(headers)) == KEY


@pytest.mark.parametrize(
    ("version", "head_size", "headers", "expected"),
    [
        ("2.0", 10, [("Host", "h")], (505, "this server speaks HTTP/1.1", ())),
        ("1.0", 10, [("Host", "h")], (400, "a WebSocket upgrade needs HTTP/1.1 or later", ())),
        ("1.1", 101, [("Host", "h")], (431, "request head too large", ())),
        ("1.1", 10, [], (400, "a request needs exactly one Host header", ())),
        ("1.1", 10, [("Host", "h"), ("host", "h")], (400, "a request needs exactly one Host header", ())),
    ],
)
def test_check_head_refusals(version, head_size, headers, expected):
    req = request(headers, http_version=version, head_size=head_size)
    assert refusal(lambda: check_head(req, 100)) == expected


def test_check_head_accepts_the_limit_and_later_minor_versions():
    check_head(request([("Host", "h")], http_version="1.1", head_size=100), 100)
    check_head(request([("Host", "h")], http_version="1.9", head_size=1), 100)
    # the version splits at its first dot: "1.0.1" is HTTP/1 minor "0.1", not "1.0" minor "1"
    check_head(request([("Host", "h")], http_version="1.0.1", head_size=1), 100)


# -- the answers as bytes --------------------------------------------------------------


def test_accept_response_exactly():
    assert accept_response(KEY, "chat", "permessage-deflate") == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )


def test_error_response_exactly():
    assert error_response(426, "use WebSocket", (("Upgrade", "websocket"),)) == (
        b"HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n"
        b"Connection: close\r\nUpgrade: websocket\r\n\r\nuse WebSocket\n"
    )
    assert error_response(400, "caf\u00e9").endswith(
        b"Content-Length: 6\r\nConnection: close\r\n\r\ncaf\xc3\xa9\n"
    )


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (404, b"HTTP/1.1 404 Not Found"),
        (418, b"HTTP/1.1 418 I'm a Teapot"),  # not in our table: the standard phrase
        (499, b"HTTP/1.1 499 Client Error"),  # no standard phrase
        (599, b"HTTP/1.1 599 Server Error"),
    ],
)
def test_the_status_line_of_a_refusal(status, line):
    assert error_response(status, "x").split(b"\r\n")[0] == line


def test_a_response_without_a_body_says_the_reason_or_refused():
    assert Response(403).to_bytes() == error_response(403, "Forbidden")
    assert Response(418).to_bytes() == error_response(418, "refused")
    assert Response(401, "log in", (("WWW-Authenticate", "Bearer"),)).to_bytes() == error_response(
        401, "log in", (("WWW-Authenticate", "Bearer"),)
    )


@pytest.mark.parametrize("status", [399, 600, 200, "403", 403.0])
def test_a_response_is_a_4xx_or_5xx_refusal(status):
    with pytest.raises(ValueError) as info:
        Response(status)
    assert str(info.value) == f"a refusal's status is 4xx or 5xx, not {status!r}"


def test_response_boundaries_and_header_checks():
    assert Response(400).status == 400 and Response(599).status == 599
    with pytest.raises(ValueError, match="is not an HTTP token"):
        Response(403, "", (("Bad Name", "x"),))
    with pytest.raises(ValueError, match="control or non-latin-1"):
        Response(403, "", (("X-Ok", "a\nb"),))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("Bad Name", "x", "header name 'Bad Name' is not an HTTP token"),
        (b"X-Bytes", "x", "header name b'X-Bytes' is not an HTTP token"),
        ("X-Next", "a\r\nb", "header 'X-Next' has a value with a control or non-latin-1 character"),
        ("X-Bytes", b"x", "header 'X-Bytes' has a value with a control or non-latin-1 character"),
        ("X-Euro", "\u20ac", "header 'X-Euro' has a value with a control or non-latin-1 character"),
    ],
)
def test_check_header_messages(name, value, message):
    with pytest.raises(ValueError) as info:
        check_header(name, value)
    assert str(info.value) == message


# -- Headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("filler", [0, 23, 24, 40])
def test_headers_lookups_are_the_same_scanned_or_indexed(filler):
    items = [(f"X-Fill-{i}", str(i)) for i in range(filler)] + [
        ("Cookie", "a=1"),
        ("COOKIE", "b=2"),
        ("Host", "h"),
    ]
    headers = Headers(items)
    assert headers.get_all("cookie") == ["a=1", "b=2"] and headers.get_all("COOKIE") == ["a=1", "b=2"]
    assert headers.get_all("absent") == [] and headers["Cookie"] == "a=1, b=2"
    assert headers.get_all("cookie") == ["a=1", "b=2"]  # again: the index is kept
    assert list(headers)[-2:] == ["cookie", "host"] and len(headers) == filler + 2
    with pytest.raises(KeyError) as info:
        headers["absent"]
    assert info.value.args == ("absent",)


def test_tokens_split_at_commas_only():
    assert Headers([("Connection", "Upgrade,keep-alive"), ("connection", " , x y ")]).tokens(
        "connection"
    ) == [
        "upgrade",
        "keep-alive",
        "x y",
    ]


# -- Request: cookies, WSGI environs, routing ------------------------------------------


def test_cookie():
    req = request([("Cookie", "a=1; session=abc=def"), ("Cookie", "flag; b=2")])
    assert (req.cookie("a"), req.cookie("session"), req.cookie("b"), req.cookie("flag"), req.cookie("c")) == (
        "1",
        "abc=def",
        "2",
        None,
        None,
    )


def test_from_environ_reads_every_field():
    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/app",
        "PATH_INFO": "/caf\xc3\xa9 x",
        "QUERY_STRING": "room=1&room=2&empty=",
        "SERVER_PROTOCOL": "HTTP/1.0",
        "REMOTE_ADDR": "10.0.0.5",
        "REMOTE_PORT": "5123",
        "HTTP_SEC_WEBSOCKET_KEY": KEY,
        "HTTP_HOST": "example.com",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "0",
        "wsgi.input": object(),
    }
    req = Request.from_environ(environ)
    assert (req.method, req.path, req.query, req.target) == (
        "POST",
        "/app/café x",
        {"room": "1", "empty": ""},
        "/app/caf%C3%A9%20x?room=1&room=2&empty=",
    )
    assert req.headers.raw_items() == [
        ("Sec-Websocket-Key", KEY),
        ("Host", "example.com"),
        ("Content-Type", "text/plain"),
        ("Content-Length", "0"),
    ]
    assert (req.remote_address, req.client_ip, req.http_version) == (("10.0.0.5", 5123), "10.0.0.5", "1.0")
    path_and_query = len("/app/caf\xc3\xa9 x") + len("room=1&room=2&empty=")
    names_and_values = sum(len(n) + len(v) + 4 for n, v in req.headers.raw_items())
    assert req.head_size == path_and_query + 16 + names_and_values


def test_from_environ_defaults():
    req = Request.from_environ({"CONTENT_TYPE": "", "REMOTE_PORT": ""})
    assert (req.method, req.path, req.query, req.target, req.http_version) == ("GET", "/", {}, "/", "1.1")
    assert (req.remote_address, req.client_ip, req.headers.raw_items(), req.head_size) == (
        ("", 0),
        "",
        [],
        17,
    )
    assert Request.from_environ({"PATH_INFO": ""}).path == "/"
    assert Request.from_environ({"PATH_INFO": "/\xff"}).path == "/\ufffd"  # not UTF-8: replaced


def test_routed_keeps_everything_and_adds_params_and_ip():
    req = Request(
        "GET",
        "/u/a",
        {"q": "1"},
        Headers([("Host", "h")]),
        ("10.0.0.1", 80),
        {},
        "/u/a?q=1",
        "10.0.0.1",
        "1.1",
        99,
    )
    routed = req.routed({"user": "a"}, "203.0.113.7")
    assert routed == Request(
        "GET",
        "/u/a",
        {"q": "1"},
        req.headers,
        ("10.0.0.1", 80),
        {"user": "a"},
        "/u/a?q=1",
        "203.0.113.7",
        "1.1",
        99,
    )


# -- client_ip -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "trusted", "expected"),
    [
        ([("X-Forwarded-For", "203.0.113.7, 10.0.0.2")], None, "10.0.0.1"),
        ([("X-Forwarded-For", "203.0.113.7, 10.0.0.2")], [], "10.0.0.1"),
        ([("X-Forwarded-For", "203.0.113.7, 10.0.0.2")], ["192.168.0.0/16"], "10.0.0.1"),  # peer not trusted
        ([("X-Forwarded-For", "203.0.113.7, 10.0.0.2")], ["10.0.0.0/8"], "203.0.113.7"),
        (
            [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "10.0.0.2")],
            ["10.0.0.0/8"],
            "203.0.113.7",
        ),
        ([("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.2")], ["10.0.0.0/8"], "203.0.113.7"),
        (
            [("X-Forwarded-For", "10.0.0.3, 10.0.0.2")],
            ["10.0.0.0/8"],
            "10.0.0.3",
        ),  # all trusted: the leftmost
        ([("X-Forwarded-For", "203.0.113.7:4711, 10.0.0.2")], ["10.0.0.0/8"], "203.0.113.7"),
        ([("X-Forwarded-For", "unknown, 10.0.0.2")], ["10.0.0.0/8"], "10.0.0.2"),  # not an IP: stop
        ([("X-Forwarded-For", "garbage")], ["10.0.0.1"], "10.0.0.1"),
        ([("Forwarded", 'for=203.0.113.7;proto=https, For="10.0.0.2"')], ["10.0.0.0/8"], "203.0.113.7"),
        ([("Forwarded", 'proto=https;for="[2001:db8::1]:4711"')], ["10.0.0.0/8"], "2001:db8::1"),
        ([("Forwarded", "for=2001:db8::2")], ["10.0.0.0/8"], "2001:db8::2"),
        ([("Forwarded", "for=198.51.100.1,for=203.0.113.7")], ["10.0.0.0/8"], "203.0.113.7"),
        ([("Forwarded", "proto=https"), ("X-Forwarded-For", "203.0.113.7")], ["10.0.0.0/8"], "10.0.0.1"),
        (
            [("Forwarded", "for=203.0.113.9"), ("X-Forwarded-For", "203.0.113.7")],
            ["10.0.0.0/8"],
            "203.0.113.9",
        ),
        ([("X-Forwarded-For", "[2001:db8::3]:80")], ["10.0.0.1/32"], "2001:db8::3"),
        ([("X-Forwarded-For", " 2001:DB8::4 ")], ["10.0.0.1"], "2001:db8::4"),
    ],
)
def test_client_ip(headers, trusted, expected):
    req = request(headers, remote_address=("10.0.0.1", 5000))
    assert client_ip(req, trusted) == expected


def test_client_ip_of_a_unix_or_unknown_peer():
    assert client_ip(request([("X-Forwarded-For", "203.0.113.7")], remote_address=()), ["10.0.0.0/8"]) == ""
    assert (
        client_ip(request([("X-Forwarded-For", "203.0.113.7")], remote_address=("", 0)), ["10.0.0.0/8"]) == ""
    )


# -- the head reader's boundaries ------------------------------------------------------

HEAD = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GET /\r\n\r\n", (400, "malformed request line", ())),
        (b" GET / HTTP/1.1\r\nHost: h\r\n\r\n", (400, "malformed request line", ())),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", (505, "this server speaks HTTP/1.1", ())),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\n  folded\r\n\r\n",
            (400, "obsolete line folding in the request head", ()),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\n\tfolded\r\n\r\n",
            (400, "obsolete line folding in the request head", ()),
        ),
        (b"GET / HTTP/1.1\r\nHost h\r\n\r\n", (400, "malformed header line", ())),
        (
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            (400, "a WebSocket upgrade request has no body", ()),
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            (400, "a WebSocket upgrade request has no body", ()),
        ),
    ],
)
def test_head_reader_refusals(data, expected):
    assert refusal(lambda: RequestHeadReader(1 << 16).feed(data)) == expected


def test_head_reader_eof_and_header_count():
    assert refusal(lambda: RequestHeadReader(100).feed(b"")) == (
        400,
        "connection closed before the request head was complete",
        (),
    )
    lines = b"".join(b"X-%d: v\r\n" % i for i in range(128))
    assert RequestHeadReader(1 << 16).feed(b"GET / HTTP/1.1\r\n" + lines + b"\r\n") is not None
    lines += b"X-128: v\r\n"
    assert refusal(lambda: RequestHeadReader(1 << 16).feed(b"GET / HTTP/1.1\r\n" + lines + b"\r\n")) == (
        431,
        "more than 128 header lines",
        (),
    )


def test_only_empty_lines_are_skipped_before_the_request_line():
    req = RequestHeadReader(1 << 16).feed(b"\r\n\nXGET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert req is not None and req.method == "XGET"


def test_head_reader_content_length_zero_and_latin1():
    req = RequestHeadReader(1 << 16).feed(
        b"GET /caf%C3%A9 HTTP/1.1\r\nContent-Length: 0\r\nX-L: caf\xe9\r\n\r\n"
    )
    assert req is not None and req.path == "/café" and req.headers["x-l"] == "caf\u00e9"


def test_head_reader_size_at_the_limit_and_one_past():
    # max_size counts the whole head, its empty line included, for CRLF and bare-LF heads alike
    for head in (HEAD, HEAD.replace(b"\r\n", b"\n")):
        request = RequestHeadReader(len(head)).feed(head + b"\x81")  # a frame may follow at once
        assert request is not None and request.head_size == len(head)
        assert refusal(lambda head=head: RequestHeadReader(len(head) - 1).feed(head)) == (431, "request head too large", ())
    reader = RequestHeadReader(10)
    assert reader.feed(b"GET / HTTP") is None  # exactly max_size bytes, no end yet: wait
    assert refusal(lambda: reader.feed(b"/")) == (431, "request head too large", ())


def test_head_reader_trailing_data_and_head_size():
    frames = b"\x81\x83\n\r\n\x00rest\n\n"
    reader = RequestHeadReader(1 << 16)
    req = reader.feed(HEAD + frames)
    assert reader.trailing_data == frames and req is not None
    assert (req.path, req.query, req.target, req.http_version) == ("/a", {"x": "1"}, "/a?x=1", "1.1")
    lf = HEAD.replace(b"\r\n", b"\n")
    reader = RequestHeadReader(1 << 16)
    req = reader.feed(b"\r\n" + lf + frames)  # bare LF endings; empty lines before the request line
    assert reader.trailing_data == frames and req is not None and req.head_size == len(lf)
    reader = RequestHeadReader(1 << 16)
    for i in range(len(HEAD) - 1):
        assert reader.feed(HEAD[i : i + 1]) is None
    assert reader.feed(HEAD[-1:] + b"x") is not None and reader.trailing_data == b"x"
