"""permessage-deflate (RFC 7692) at its edges: the negotiated parameters, our compressor's window
and memLevel as exact bytes, context takeover on both sides, and the size guard's arithmetic."""

from __future__ import annotations

import random
import zlib

import pytest
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode, ParseFailed, RsvBits

from ignitia_sync import Message, ProtocolError
from ignitia_sync.sansio.deflate import _SizeGuard, deflate_from_response, negotiate_deflate
from ignitia_sync.sansio.frames import encode_frame, encode_shared_frame, unmask
from ignitia_sync.sansio.protocol import WebSocketProtocol
from tests.wire import deflate, frame

# A payload whose compressed bytes differ for every window size and memLevel used below.
random.seed(1)
_WORDS = [f"w{i}".encode() for i in range(300)]
PAYLOAD = b" ".join(random.choice(_WORDS) for _ in range(6000))


def compressed(payload: bytes, bits: int, mem_level: int) -> bytes:
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits, mem_level)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def payload_of(data: bytes) -> bytes:
    """The (unmasked) payload of one frame."""
    length = data[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    if data[1] & 0x80:
        return unmask(data[start + 4 :], data[start : start + 4])
    return data[start:]


def test_the_payload_tells_the_settings_apart():
    outputs = {
        compressed(PAYLOAD, bits, mem) for bits, mem in ((12, 5), (15, 8), (12, 8), (15, 5), (10, 3), (10, 8))
    }
    assert len(outputs) == 6


@pytest.mark.parametrize(("bits", "mem_level"), [(12, 5), (10, 3)])
def test_a_server_compresses_with_its_window_and_mem_level(bits, mem_level):
    extension, _ = negotiate_deflate(
        ["permessage-deflate"], 1 << 20, server_window_bits=bits, mem_level=mem_level
    )
    proto = WebSocketProtocol(deflate=extension)
    data = proto.send_bytes(PAYLOAD)
    assert data[0] == 0xC2 and payload_of(data) == compressed(PAYLOAD, bits, mem_level)


def test_a_client_compresses_with_its_window_and_mem_level():
    extension = deflate_from_response([], 1 << 20, client_window_bits=10, mem_level=3)
    data = WebSocketProtocol(client=True, deflate=extension).send_bytes(PAYLOAD)
    assert data[0] == 0xC2 and payload_of(data) == compressed(PAYLOAD, 10, 3)
    # the defaults: 12 bits, memLevel 5
    data = WebSocketProtocol(client=True, deflate=deflate_from_response([], 1 << 20)).send_bytes(PAYLOAD)
    assert payload_of(data) == compressed(PAYLOAD, 12, 5)
    # the server may ask for a smaller window
    extension = deflate_from_response(["client_max_window_bits=10"], 1 << 20)
    data = WebSocketProtocol(client=True, deflate=extension).send_bytes(PAYLOAD)
    assert payload_of(data) == compressed(PAYLOAD, 10, 5)


def test_a_shared_frame_uses_the_keys_window_and_mem_level():
    assert payload_of(encode_shared_frame(Message.binary(PAYLOAD), (10, 3))) == compressed(PAYLOAD, 10, 3)
    assert encode_shared_frame(Message.text("hello"), (12, 5))[0] == 0xC1


@pytest.mark.parametrize("message", [Message.ping(b"x"), Message.pong(b"x"), Message.close()])
def test_only_text_and_binary_are_broadcast_with_a_message_naming_the_type(message):
    name = type(message).__name__
    for encode in (encode_frame, lambda m: encode_shared_frame(m, (12, 5))):
        with pytest.raises(TypeError) as info:
            encode(message)
        assert str(info.value) == f"only Text and Binary messages are broadcast, not {name}"


def test_with_context_takeover_a_repeated_message_is_smaller_and_without_it_the_same():
    extension, _ = negotiate_deflate(["permessage-deflate"], 1 << 20)
    proto = WebSocketProtocol(deflate=extension)
    first, second = proto.send_text("hello hello hello"), proto.send_text("hello hello hello")
    assert len(second) < len(first)
    proto.send(Message.ping(b"p"))  # a control frame leaves the compressor alone
    assert len(proto.send_text("hello hello hello")) < len(first)
    extension, _ = negotiate_deflate(["permessage-deflate; server_no_context_takeover"], 1 << 20)
    proto = WebSocketProtocol(deflate=extension)
    assert proto.send_text("hello hello hello") == proto.send_text("hello hello hello")


def _with_context(messages: list[bytes]) -> list[bytes]:
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return [(compressor.compress(m) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4] for m in messages]


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
def test_the_peers_promise_of_no_context_takeover_resets_our_inflater(client):
    """A peer that promised no context takeover and still refers back fails (1007): its
    messages are inflated from scratch, and no inflater is kept between messages."""
    first, second = _with_context([b"hello hello", b"hello hello"])
    if client:
        extension = deflate_from_response(["server_no_context_takeover"], 1 << 20)
    else:
        extension, _ = negotiate_deflate(["permessage-deflate; client_no_context_takeover"], 1 << 20)
    proto = WebSocketProtocol(client=client, deflate=extension)
    proto.receive_data(
        frame(0x1, first, rsv1=True, mask=not client) + frame(0x1, second, rsv1=True, mask=not client)
    )
    events = proto.events()
    assert next(events) == Message.text("hello hello")
    with pytest.raises(ProtocolError) as info:
        next(events)
    assert info.value.code == 1007
    # without that promise, the context is kept
    if client:
        extension = deflate_from_response(["client_no_context_takeover"], 1 << 20)
    else:
        extension, _ = negotiate_deflate(["permessage-deflate; server_no_context_takeover"], 1 << 20)
    proto = WebSocketProtocol(client=client, deflate=extension)
    proto.receive_data(
        frame(0x1, first, rsv1=True, mask=not client) + frame(0x1, second, rsv1=True, mask=not client)
    )
    assert list(proto.events()) == [Message.text("hello hello")] * 2


def test_an_uncompressed_fragmented_message_on_a_deflate_connection():
    extension, _ = negotiate_deflate(["permessage-deflate"], 1 << 20)
    proto = WebSocketProtocol(deflate=extension)
    proto.receive_data(frame(0x2, b"\xff\xfe", fin=False) + frame(0x0, b"\xfd"))
    assert list(proto.events()) == [Message.binary(b"\xff\xfe\xfd")]


def test_a_compressed_control_frame_is_refused_by_our_extension():
    extension, _ = negotiate_deflate(["permessage-deflate"], 1000)
    proto = FrameProtocol(client=False, extensions=[extension])
    proto.receive_bytes(frame(0x9, b"p", rsv1=True))
    with pytest.raises(ParseFailed) as info:
        list(proto.received_frames())
    assert (info.value.code, str(info.value)) == (CloseReason.PROTOCOL_ERROR, "error in extension")


def test_a_text_message_over_the_limit_through_wsproto_is_1009():
    proto = WebSocketProtocol(max_message_size=10)
    proto.receive_data(frame(0x1, b"a" * 6, fin=False) + frame(0x0, b"a" * 5))
    with pytest.raises(ProtocolError) as info:
        list(proto.events())
    assert (info.value.code, info.value.reason) == (1009, "message too big")


@pytest.mark.parametrize("max_size", [100, 6400, 1000])
def test_the_size_guard_slack_is_max_over_64_plus_1024_exactly(max_size):
    slack = max_size + max_size // 64 + 1024
    compressed_bit = RsvBits(True, False, False)
    guard = _SizeGuard(max_size)
    assert guard.frame_inbound_header(None, Opcode.BINARY, compressed_bit, slack) == RsvBits(
        False, False, False
    )
    guard = _SizeGuard(max_size)
    assert (
        guard.frame_inbound_header(None, Opcode.BINARY, compressed_bit, slack + 1)
        is CloseReason.MESSAGE_TOO_BIG
    )
    guard = _SizeGuard(max_size)
    assert guard.frame_inbound_header(None, Opcode.TEXT, RsvBits(False, False, False), max_size + 1) is (
        CloseReason.MESSAGE_TOO_BIG
    )


def test_the_size_guard_ignores_control_frames_and_counts_each_data_opcode():
    guard = _SizeGuard(10)
    for opcode in (Opcode.PING, Opcode.PONG, Opcode.CLOSE):
        assert guard.frame_inbound_header(None, opcode, RsvBits(False, False, False), 125) == RsvBits(
            False, False, False
        )
    assert guard.offer() is False


def test_the_client_parameters_follow_the_servers_answer():
    extension = deflate_from_response(
        [
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits=10",
            'client_max_window_bits="9"',
        ],
        1 << 20,
    )
    assert (
        extension.server_no_context_takeover,
        extension.client_no_context_takeover,
        extension.server_max_window_bits,
        extension.client_max_window_bits,
    ) == (True, True, 10, 9)
    extension = deflate_from_response([], 1 << 20)
    assert (extension.server_no_context_takeover, extension.client_no_context_takeover) == (False, False)
    assert (extension.server_max_window_bits, extension.client_max_window_bits) == (15, 12)
    extension = deflate_from_response(["client_max_window_bits=9"], 1 << 20)
    assert extension.client_max_window_bits == 9


def test_the_client_inflates_at_most_max_message_size():
    body = deflate(b"z" * 101)
    proto = WebSocketProtocol(client=True, deflate=deflate_from_response([], 100))
    proto.receive_data(frame(0x2, body, rsv1=True, mask=False))
    with pytest.raises(ProtocolError) as info:
        list(proto.events())
    assert info.value.code == 1009


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["client_max_window_bits"], "invalid permessage-deflate parameters in the response"),
        (["bogus"], "invalid permessage-deflate parameters in the response"),
        (
            ["client_max_window_bits=8"],
            "the server asked for client_max_window_bits=8, which zlib cannot honour",
        ),
    ],
)
def test_a_client_refuses_a_bad_answer_with_a_clear_message(params, message):
    with pytest.raises(ValueError) as info:
        deflate_from_response(params, 1024)
    assert str(info.value) == message


def test_the_servers_parameters_are_what_it_answered():
    extension, answer = negotiate_deflate(
        ["permessage-deflate; server_max_window_bits=10; client_max_window_bits=8"], 1 << 20
    )
    assert answer == "permessage-deflate; server_max_window_bits=10; client_max_window_bits=8"
    # our inflater reads the client's 8-bit window with 9 bits, zlib's smallest raw window
    assert (extension.server_max_window_bits, extension.client_max_window_bits) == (10, 9)
    extension, answer = negotiate_deflate(["permessage-deflate; client_max_window_bits=9"], 1 << 20)
    assert extension.client_max_window_bits == 9 and answer.endswith("client_max_window_bits=9")


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        # a declined offer is skipped, the next one in the same header taken
        (
            "permessage-deflate; bogus, permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=12",
        ),
        ("permessage-deflate; client_max_window_bits=15", "permessage-deflate; client_max_window_bits=12"),
        ("permessage-deflate; server_max_window_bits=15", "permessage-deflate; server_max_window_bits=15"),
        ("permessage-deflate; server_no_context_takeover=10", None),
        ("permessage-deflate; client_max_window_bits=X10", None),
    ],
)
def test_more_offers(offer, expected):
    assert negotiate_deflate([offer], 1024)[1] == expected


def test_a_lone_continuation_frame_is_1002_not_a_size_error():
    proto = WebSocketProtocol(max_message_size=4)
    proto.receive_data(frame(0x0, b"abcd"))
    with pytest.raises(ProtocolError) as info:
        list(proto.events())
    assert info.value.code == 1002


def test_an_offer_of_another_extension_is_skipped_for_the_next_one():
    assert negotiate_deflate(["x-webkit-deflate-frame, permessage-deflate"], 1024)[1] == "permessage-deflate"
