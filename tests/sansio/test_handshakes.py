"""The sans-I/O handshakes, both sides (RFC 6455 4, RFC 7692 5): exact bytes, statuses, refusals.

No sockets: a request head goes into ``accept``, a server's answer into ``ClientHandshake``.
"""

from __future__ import annotations

import zlib

import pytest
from wsproto.utilities import generate_accept_token

from ignitia_sync import HandshakeError, Message, ProtocolError
from ignitia_sync.exceptions import InvalidHandshake
from ignitia_sync.sansio.client_handshake import MAX_BODY, USER_AGENT, ClientHandshake, Opened, Redirect
from ignitia_sync.sansio.http import Headers, Request, RequestHeadReader
from ignitia_sync.sansio.server_handshake import accept, choose_subprotocol
from ignitia_sync.settings import ConnectionSettings
from tests.wire import frame

# RFC 6455 1.3: the sample nonce and the accept value it must give.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def upgrade(extra: str = "", *, method: str = "GET", version: str = "1.1") -> Request:
    head = (
        f"{method} /chat HTTP/{version}\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()
    request = RequestHeadReader(1 << 20).feed(head)
    assert request is not None
    return request


# -- the server side ------------------------------------------------------------------


def test_the_101_is_exactly_rfc_6455s_answer():
    accepted = accept(upgrade(), ConnectionSettings(compression=None))
    assert accepted.response == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() + b"\r\n\r\n"
    )
    assert accepted.subprotocol is None and accepted.extensions is None
    # a server protocol without deflate: plain frames, unmasked, no RSV1
    assert accepted.protocol.plain_framing
    assert accepted.protocol.send(Message.text("hi")) == b"\x81\x02hi"


def test_the_chosen_subprotocol_and_extension_are_answered_in_the_101():
    settings = ConnectionSettings(subprotocols=["chat", "v2"])
    accepted = accept(
        upgrade("Sec-WebSocket-Protocol: v2, chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"),
        settings,
    )
    assert accepted.subprotocol == "v2"
    assert accepted.extensions == "permessage-deflate"
    assert accepted.response.endswith(
        b"Sec-WebSocket-Protocol: v2\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )
    # the protocol compresses: RSV1 set on the frame of a compressible message
    assert accepted.protocol.send(Message.text("a" * 100))[0] == 0xC1


def test_a_deflate_offer_is_declined_when_compression_is_off():
    accepted = accept(
        upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n"), ConnectionSettings(compression=None)
    )
    assert accepted.extensions is None
    assert b"Sec-WebSocket-Extensions" not in accepted.response
    assert accepted.protocol.send(Message.text("a" * 100))[:2] == b"\x81\x64"


def test_the_deflate_settings_reach_the_negotiation():
    settings = ConnectionSettings(
        deflate_server_window_bits=10,
        deflate_client_window_bits=9,
        deflate_mem_level=3,
        deflate_no_context_takeover=True,
    )
    accepted = accept(
        upgrade("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"), settings
    )
    assert accepted.extensions == "permessage-deflate; server_no_context_takeover; client_max_window_bits=9"
    # no context takeover with our window and memLevel: the shared framing key says which
    assert accepted.protocol.framing_key == (10, 3)
    # and the compressor really is a 10-bit, memLevel 3 one
    payload = bytes(range(256)) * 8
    expected = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -10, 3)
    body = expected.compress(payload) + expected.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    sent = accepted.protocol.send(Message.binary(payload))
    assert sent[0] == 0xC2 and sent.endswith(body[:-4])


def test_max_message_size_reaches_the_protocol():
    accepted = accept(upgrade(), ConnectionSettings(compression=None, max_message_size=10))
    accepted.protocol.receive_data(frame(0x2, b"x" * 11))
    with pytest.raises(ProtocolError) as info:
        list(accepted.protocol.events())
    assert info.value.code == 1009


def test_max_head_is_the_limit_of_the_head():
    request = upgrade()
    assert request.head_size < 16384
    accept(request, ConnectionSettings(), max_head=request.head_size)  # at the limit: fine
    with pytest.raises(HandshakeError) as info:
        accept(request, ConnectionSettings(), max_head=request.head_size - 1)
    assert info.value.status == 431
    big = upgrade("X-Filler: " + "a" * 16400 + "\r\n")
    with pytest.raises(HandshakeError) as info:
        accept(big, ConnectionSettings())  # the default, 16384
    assert info.value.status == 431


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (lambda: upgrade(method="POST"), 405),
        (lambda: upgrade(version="1.0"), 400),
        (lambda: upgrade("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"), 400),
    ],
)
def test_a_bad_upgrade_is_refused_with_its_status(request_, status):
    with pytest.raises(HandshakeError) as info:
        accept(request_(), ConnectionSettings())
    assert info.value.status == status


@pytest.mark.parametrize(
    ("offered", "supported", "chosen"),
    [
        (["v2, v1"], ["v1", "v2"], "v2"),  # the client's order, not ours
        (["x", " v1 ,v2"], ["v2", "v1"], "v1"),  # across headers, spaces stripped
        (["v1"], [], None),
        (["v3"], ["v1"], None),
        ([], ["v1"], None),
    ],
)
def test_choose_subprotocol(offered, supported, chosen):
    request = Request("GET", "/", {}, Headers([("Sec-WebSocket-Protocol", value) for value in offered]))
    assert choose_subprotocol(request, supported) == chosen


# -- the client side ------------------------------------------------------------------


def answer(handshake: ClientHandshake, extra: str = "", *, accept_value: str | None = None) -> bytes:
    if accept_value is None:
        accept_value = generate_accept_token(handshake.key.encode()).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_value}\r\n{extra}\r\n"
    ).encode()


def opened(handshake: ClientHandshake, data: bytes) -> Opened:
    handshake.receive_data(data)
    outcome = handshake.outcome()
    assert isinstance(outcome, Opened)
    return outcome


def test_the_request_is_exactly_these_bytes():
    handshake = ClientHandshake("example.com:8080", "/chat?room=1", ConnectionSettings(compression=None))
    assert (
        handshake.request
        == (
            "GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {handshake.key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: {USER_AGENT}\r\n\r\n"
        ).encode()
    )
    assert USER_AGENT == "ignitia_sync"


def test_the_key_is_16_random_bytes_in_base64():
    import base64

    keys = {ClientHandshake("h", "/", ConnectionSettings()).key for _ in range(8)}
    assert len(keys) == 8
    assert all(len(base64.b64decode(key, validate=True)) == 16 for key in keys)


def test_subprotocols_compression_and_extra_headers_in_the_request():
    handshake = ClientHandshake(
        "h",
        "/",
        ConnectionSettings(),
        subprotocols=["v2", "v1"],
        headers=[("Host", "other"), ("User-Agent", "me"), ("Origin", "https://h")],
    )
    head = handshake.request.decode()
    # h11 puts Host first; ours is left out for the caller's
    assert head == (
        "GET / HTTP/1.1\r\nHost: other\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {handshake.key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: v2, v1\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        "User-Agent: me\r\nOrigin: https://h\r\n\r\n"
    )


def test_bad_arguments_are_refused():
    settings = ConnectionSettings()
    with pytest.raises(TypeError, match=r"^subprotocols must be a sequence of names, not a string$"):
        ClientHandshake("h", "/", settings, subprotocols="chat")
    with pytest.raises(ValueError, match="HTTP token"):
        ClientHandshake("h", "/", settings, subprotocols=["ok", "not ok"])
    ClientHandshake("h", "/", settings, subprotocols=["!#$%&'*+-.^_`|~09azAZ"])  # every token character
    with pytest.raises(ValueError) as info:
        ClientHandshake("h", "/", settings, headers=[("Sec-WebSocket-Protocol", "x"), ("Upgrade", "y")])
    assert str(info.value) == (
        "the client sets sec-websocket-protocol, upgrade itself (use subprotocols=, compression=)"
    )
    for name in ("connection", "Sec-WebSocket-Key", "sec-websocket-version", "Sec-WebSocket-Extensions"):
        with pytest.raises(ValueError, match="itself"):
            ClientHandshake("h", "/", settings, headers=[(name, "x")])
    with pytest.raises(ValueError, match=r"^invalid request header or target: "):
        ClientHandshake("h", "/", settings, headers=[("X-Evil", "a\r\nInjected: 1")])
    with pytest.raises(ValueError, match=r"^invalid request header or target: "):
        ClientHandshake("h", "/a b", settings)


def test_a_101_opens_with_the_bytes_after_the_head():
    handshake = ClientHandshake("h", "/", ConnectionSettings(compression=None, max_message_size=10))
    outcome = opened(handshake, answer(handshake, "X-Extra: 1\r\n") + b"\x81\x02hi")
    assert outcome.subprotocol is None and outcome.trailing_data == b"\x81\x02hi"
    assert outcome.headers["x-extra"] == "1"
    # a client protocol: masks what it sends, limits what it reads
    sent = outcome.protocol.send(Message.text("hi"))
    assert sent[:2] == b"\x81\x82" and len(sent) == 8
    outcome.protocol.receive_data(outcome.trailing_data + frame(0x2, b"x" * 11, mask=False))
    events = outcome.protocol.events()
    assert next(events) == Message.text("hi")
    with pytest.raises(ProtocolError) as info:
        next(events)
    assert info.value.code == 1009
    handshake.receive_data(b"more")  # once decided, later bytes change nothing
    assert handshake.outcome() is outcome


def test_the_answer_may_come_byte_by_byte_after_a_100_continue():
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + answer(handshake)
    for i in range(len(data)):
        assert handshake.outcome() is None
        handshake.receive_data(data[i : i + 1])
    assert isinstance(handshake.outcome(), Opened)


@pytest.mark.parametrize(
    "head",
    [
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
    ],
)
def test_a_101_without_the_upgrade_headers_is_invalid(head):
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    accept_value = generate_accept_token(handshake.key.encode()).decode()
    with pytest.raises(
        InvalidHandshake, match=r"^the 101 response lacks Upgrade: websocket or Connection: Upgrade$"
    ):
        handshake.receive_data(head.format(accept=accept_value).encode())


def test_the_accept_value_must_be_the_one_for_our_key_and_only_once():
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    with pytest.raises(InvalidHandshake, match=r"^wrong or missing Sec-WebSocket-Accept$"):
        handshake.receive_data(answer(handshake, accept_value=RFC_ACCEPT))
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    good = generate_accept_token(handshake.key.encode()).decode()
    with pytest.raises(InvalidHandshake, match=r"^wrong or missing Sec-WebSocket-Accept$"):
        handshake.receive_data(answer(handshake, f"Sec-WebSocket-Accept: {good}\r\n"))


def test_the_subprotocol_must_be_one_we_offered():
    handshake = ClientHandshake("h", "/", ConnectionSettings(), subprotocols=["v1", "v2"])
    assert opened(handshake, answer(handshake, "Sec-WebSocket-Protocol:  v2 \r\n")).subprotocol == "v2"
    for extra in ("Sec-WebSocket-Protocol: v3\r\n", "Sec-WebSocket-Protocol: v1, v2\r\n"):
        handshake = ClientHandshake("h", "/", ConnectionSettings(), subprotocols=["v1", "v2"])
        with pytest.raises(InvalidHandshake, match=r"^the server chose a subprotocol we did not offer: "):
            handshake.receive_data(answer(handshake, extra))
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    with pytest.raises(InvalidHandshake, match=r"did not offer: 'x{64}'$"):
        handshake.receive_data(answer(handshake, "Sec-WebSocket-Protocol: " + "x" * 100 + "\r\n"))


def test_the_extension_must_be_the_deflate_we_offered():
    settings = ConnectionSettings(deflate_client_window_bits=9, max_message_size=10)
    handshake = ClientHandshake("h", "/", settings)
    outcome = opened(
        handshake,
        answer(handshake, "Sec-WebSocket-Extensions: Permessage-Deflate; client_max_window_bits=9, \r\n"),
    )
    # a client protocol with deflate: RSV1 on compressible messages, masked
    sent = outcome.protocol.send(Message.text("a" * 100))
    assert sent[0] == 0xC1 and sent[1] & 0x80
    # the inflate limit is max_message_size
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    body = compressor.compress(b"y" * 11) + compressor.flush(zlib.Z_SYNC_FLUSH)
    outcome.protocol.receive_data(frame(0x2, body[:-4], rsv1=True, mask=False))
    with pytest.raises(ProtocolError) as info:
        list(outcome.protocol.events())
    assert info.value.code == 1009
    bad = [
        (ConnectionSettings(), "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"),
        (ConnectionSettings(), "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n"),
        (ConnectionSettings(compression=None), "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
    ]
    for settings, extra in bad:
        handshake = ClientHandshake("h", "/", settings)
        with pytest.raises(InvalidHandshake, match=r"^the server chose an extension we did not offer$"):
            handshake.receive_data(answer(handshake, extra))
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    with pytest.raises(InvalidHandshake, match=r"^invalid permessage-deflate parameters in the response$"):
        handshake.receive_data(answer(handshake, "Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n"))


def test_an_empty_extensions_header_means_none():
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    outcome = opened(handshake, answer(handshake, "Sec-WebSocket-Extensions: ,\r\n"))
    assert outcome.protocol.send(Message.text("a" * 100))[0] == 0x81


def test_a_refusal_keeps_status_body_and_headers():
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    handshake.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\nX-Why: no\r\n\r\nno \xff!")
    outcome = handshake.outcome()
    assert isinstance(outcome, HandshakeError)
    assert (outcome.status, outcome.body) == (403, "no \ufffd!")
    assert outcome.headers == (("content-length", "5"), ("x-why", "no"))  # as h11 gives them


def test_a_body_until_the_end_of_the_connection():
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    handshake.receive_data(b"HTTP/1.1 500 Oops\r\n\r\npart one, ")
    assert handshake.outcome() is None
    handshake.receive_data(b"part two")
    assert handshake.outcome() is None
    handshake.receive_data(b"")
    outcome = handshake.outcome()
    assert isinstance(outcome, HandshakeError)
    assert (outcome.status, outcome.body) == (500, "part one, part two")


def test_a_long_body_is_cut_at_max_body():
    assert MAX_BODY == 64 * 1024
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    handshake.receive_data(b"HTTP/1.1 400 Bad\r\nContent-Length: 100000\r\n\r\n" + b"a" * (MAX_BODY - 1))
    assert handshake.outcome() is None
    handshake.receive_data(b"bc")
    outcome = handshake.outcome()
    assert isinstance(outcome, HandshakeError) and outcome.body == "a" * (MAX_BODY - 1) + "b"


def test_a_redirect_with_a_location():
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    handshake.receive_data(
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: ws://other/\r\nContent-Length: 3\r\n\r\nabc"
    )
    outcome = handshake.outcome()
    assert isinstance(outcome, Redirect)
    assert (outcome.status, outcome.location) == (307, "ws://other/")
    assert (outcome.refusal.status, outcome.refusal.body) == (307, "")
    assert outcome.refusal.headers == (("location", "ws://other/"), ("content-length", "3"))
    for status in (301, 302, 303, 308):
        handshake = ClientHandshake("h", "/", ConnectionSettings())
        handshake.receive_data(f"HTTP/1.1 {status} X\r\nLocation: /x\r\n\r\n".encode())
        assert isinstance(handshake.outcome(), Redirect)
    # not a redirect: 300, or a redirect status without a Location
    for head in (
        b"HTTP/1.1 300 X\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 302 X\r\nContent-Length: 0\r\n\r\n",
    ):
        handshake = ClientHandshake("h", "/", ConnectionSettings())
        handshake.receive_data(head)
        assert type(handshake.outcome()) is HandshakeError


def test_no_answer_and_broken_answers_are_invalid():
    # h11 itself refuses an end of the connection before a complete answer
    for data in (b"HTTP/1.1 10", b"HTTP/1.1 100 Continue\r\n\r\n"):
        handshake = ClientHandshake("h", "/", ConnectionSettings())
        handshake.receive_data(data)
        with pytest.raises(InvalidHandshake, match=r"^invalid HTTP response: "):
            handshake.receive_data(b"")
    with pytest.raises(InvalidHandshake, match=r"^invalid HTTP response: "):
        ClientHandshake("h", "/", ConnectionSettings()).receive_data(b"")
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    with pytest.raises(InvalidHandshake, match=r"^invalid HTTP response: "):
        handshake.receive_data(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_a_100_continue_and_the_101_in_one_read():
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    handshake.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(handshake))
    assert isinstance(handshake.outcome(), Opened)


def test_a_response_head_up_to_64_kib_is_read():
    handshake = ClientHandshake("h", "/", ConnectionSettings())
    data = answer(handshake, "X-Big: " + "b" * 40000 + "\r\n")
    handshake.receive_data(data[:30000])  # an incomplete head past h11's default 16 KiB
    outcome = opened(handshake, data[30000:])
    assert len(outcome.headers["x-big"]) == 40000


def test_the_clients_deflate_settings_reach_its_compressor():
    from tests.sansio.test_deflate_edges import PAYLOAD, compressed, payload_of

    handshake = ClientHandshake(
        "h", "/", ConnectionSettings(deflate_client_window_bits=10, deflate_mem_level=3)
    )
    outcome = opened(handshake, answer(handshake, "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
    assert payload_of(outcome.protocol.send_bytes(PAYLOAD)) == compressed(PAYLOAD, 10, 3)


def test_the_default_max_head_is_16_kib():
    request = upgrade()
    at_limit = Request(
        request.method, request.path, request.query, request.headers, http_version="1.1", head_size=16384
    )
    accept(at_limit, ConnectionSettings())
    over = Request(
        request.method, request.path, request.query, request.headers, http_version="1.1", head_size=16385
    )
    with pytest.raises(HandshakeError) as info:
        accept(over, ConnectionSettings())
    assert info.value.status == 431


def test_the_servers_inflate_limit_is_max_message_size():
    from tests.wire import deflate

    accepted = accept(
        upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n"), ConnectionSettings(max_message_size=10)
    )
    accepted.protocol.receive_data(frame(0x2, deflate(b"z" * 11), rsv1=True))
    with pytest.raises(ProtocolError) as info:
        list(accepted.protocol.events())
    assert info.value.code == 1009
