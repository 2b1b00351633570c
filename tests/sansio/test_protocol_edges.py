"""The protocol at its edges, both roles: length encodings, masking, control frames, closes.

Each test pins RFC 6455 behaviour as bytes, close codes and error texts; ``parsing_fast``
(public: the fast path is parsing) pins that the common frames never leave the fast path.
"""

from __future__ import annotations

import struct
import zlib

import pytest

from ignitia_sync import ConnectionClosed, Message, ProtocolError
from ignitia_sync.sansio.deflate import deflate_from_response, negotiate_deflate
from ignitia_sync.sansio.frames import unmask
from ignitia_sync.sansio.protocol import ProtocolState, WebSocketProtocol
from tests.wire import frame

LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def feed(proto: WebSocketProtocol, data: bytes) -> list[Message]:
    proto.receive_data(data)
    return list(proto.events())


def failure(proto: WebSocketProtocol, data: bytes) -> tuple[int, str]:
    proto.receive_data(data)
    with pytest.raises(ProtocolError) as info:
        list(proto.events())
    return info.value.code, info.value.reason


def server_deflate() -> WebSocketProtocol:
    deflate, _ = negotiate_deflate(["permessage-deflate"], 1 << 20)
    return WebSocketProtocol(deflate=deflate)


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
def test_a_fresh_protocol(client):
    proto = WebSocketProtocol(client=client)
    assert (proto.state, proto.close_code, proto.close_reason, proto.parsing_fast) == (
        ProtocolState.OPEN,
        None,
        "",
        True,
    )
    assert proto.plain_framing is (not client)
    assert (
        WebSocketProtocol(
            client=client, deflate=negotiate_deflate(["permessage-deflate"], 10)[0]
        ).plain_framing
        is False
    )


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
@pytest.mark.parametrize("length", LENGTHS)
def test_every_length_encoding_stays_on_the_fast_path_whatever_the_split(client, length):
    data = bytes(range(256)) * (length // 256 + 1)
    data = data[:length]
    messages = [
        Message.binary(data),
        Message.text("é" * (length // 2)),
        Message.pong(data[:125]),
        Message.ping(b"p"),
    ]
    stream = (
        frame(0x2, data, mask=not client)
        + frame(0x1, ("é" * (length // 2)).encode(), mask=not client)
        + frame(0xA, data[:125], mask=not client)
        + frame(0x9, b"p", mask=not client)
    )
    proto = WebSocketProtocol(client=client, max_message_size=1 << 20)
    assert feed(proto, stream) == messages and proto.parsing_fast
    # split inside every header byte of the first frame, then the rest
    for cut in range(1, 15):
        proto = WebSocketProtocol(client=client, max_message_size=1 << 20)
        got = feed(proto, stream[:cut])
        assert proto.parsing_fast, cut
        got += feed(proto, stream[cut:])
        assert got == messages and proto.parsing_fast, cut


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
def test_the_size_limit_on_the_fast_path_is_inclusive(client):
    proto = WebSocketProtocol(client=client, max_message_size=200)
    assert feed(proto, frame(0x2, b"x" * 200, mask=not client)) == [Message.binary(b"x" * 200)]
    assert proto.parsing_fast
    assert failure(proto, frame(0x2, b"x" * 201, mask=not client)) == (1009, "message too big")


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (struct.pack("!BBH", 0x82, 0xFE, 5), "Payload length used 2 bytes when 1 would have sufficed"),
        (struct.pack("!BBH", 0x82, 0xFE, 125), "Payload length used 2 bytes when 1 would have sufficed"),
        (struct.pack("!BBQ", 0x82, 0xFF, 5), "Payload length used 8 bytes when 2 would have sufficed"),
        (struct.pack("!BBQ", 0x82, 0xFF, 65535), "Payload length used 8 bytes when 2 would have sufficed"),
        (struct.pack("!BBQ", 0x82, 0xFF, 1 << 63), "8-byte payload length with non-zero MSB"),
        (struct.pack("!BBH", 0x89, 0xFE, 126), "Control frame with payload len > 125"),
        (struct.pack("!BBH", 0x8A, 0xFE, 126), "Control frame with payload len > 125"),
    ],
)
def test_non_minimal_lengths_and_long_control_frames_fail_1002(head, reason):
    proto = WebSocketProtocol()
    assert failure(proto, head + b"\x00" * 4 + b"h" * 200) == (1002, reason)


@pytest.mark.parametrize("first", [0x81, 0x82, 0x89, 0x8A])
def test_masking_in_the_wrong_direction_fails_1002(first):
    opcode = first & 0x0F
    assert failure(WebSocketProtocol(), frame(opcode, b"x", mask=False)) == (
        1002,
        "server received unexpected unmasked frame",
    )
    assert failure(WebSocketProtocol(client=True), frame(opcode, b"x", mask=True)) == (
        1002,
        "client received unexpected masked frame",
    )


def test_an_unknown_opcode_and_bad_utf8_keep_wsprotos_detail():
    assert failure(WebSocketProtocol(), frame(0x3, b"x")) == (1002, "Invalid opcode 0x3")
    code, reason = failure(WebSocketProtocol(), frame(0x1, b"\xff"))
    assert code == 1007 and reason.startswith("'utf-8' codec can't decode byte 0xff")


def test_a_pong_and_a_ping_inside_a_fragmented_message_keep_their_payloads():
    proto = WebSocketProtocol()
    stream = frame(0x1, b"he", fin=False) + frame(0xA, b"po") + frame(0x9, b"pi") + frame(0x0, b"llo")
    assert feed(proto, stream) == [Message.pong(b"po"), Message.ping(b"pi"), Message.text("hello")]
    assert proto.parsing_fast  # wsproto is idle again: back to the fast path


def test_a_peers_close_is_answered_and_recorded():
    proto = WebSocketProtocol()
    assert feed(proto, frame(0x8, struct.pack("!H", 1001) + b"away")) == [
        Message.close_with_reason(1001, "away")
    ]
    assert (proto.state, proto.close_code, proto.close_reason) == (ProtocolState.CLOSED, 1001, "away")
    assert proto.data_to_send() == b"\x88\x06\x03\xe9away"
    with pytest.raises(ConnectionClosed) as info:
        proto.send(Message.text("late"))
    assert (info.value.code, info.value.reason) == (1001, "away")
    assert proto.answer(Message.ping(b"x")) == b"" and proto.close() == b"" and proto.fail(1002) == b""


def test_a_close_without_a_status():
    proto = WebSocketProtocol()
    assert feed(proto, frame(0x8, b"")) == [Message.close()]
    assert (proto.close_code, proto.close_reason) == (1005, "")
    assert proto.data_to_send() == b"\x88\x00"


def test_a_close_frame_as_the_answer_to_ours():
    proto = WebSocketProtocol()
    assert proto.close(1000, "bye") == b"\x88\x05\x03\xe8bye"
    assert proto.state is ProtocolState.CLOSING
    assert feed(proto, frame(0x8, struct.pack("!H", 1000))) == [Message.close_with_reason(1000, "")]
    assert proto.state is ProtocolState.CLOSED and proto.data_to_send() == b""
    assert (proto.close_code, proto.close_reason) == (1000, "bye")


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
def test_the_end_of_the_stream_between_frames_is_1006_at_once(client):
    proto = WebSocketProtocol(client=client)
    assert feed(proto, frame(0x2, b"x", mask=not client)) == [Message.binary(b"x")]
    proto.receive_data(b"")
    assert (proto.state, proto.close_code, proto.close_reason) == (ProtocolState.CLOSED, 1006, "")
    assert list(proto.events()) == []
    with pytest.raises(ConnectionClosed) as info:
        proto.send_text("x")
    assert (info.value.code, info.value.reason) == (1006, "")


def test_the_end_of_the_stream_inside_a_frame_is_1006():
    proto = WebSocketProtocol()
    assert feed(proto, frame(0x2, b"abc")[:3]) == []
    proto.receive_data(b"")
    assert list(proto.events()) == []
    assert (proto.state, proto.close_code, proto.close_reason) == (ProtocolState.CLOSED, 1006, "")


def test_lose_is_1006_and_send_refuses_with_it():
    proto = WebSocketProtocol()
    proto.lose()
    assert (proto.state, proto.close_code, proto.close_reason) == (ProtocolState.CLOSED, 1006, "")
    for send in (
        lambda: proto.send(Message.binary(b"x")),
        lambda: proto.send_bytes(b"x"),
        lambda: proto.send_text("x"),
    ):
        with pytest.raises(ConnectionClosed) as info:
            send()
        assert (info.value.code, info.value.reason) == (1006, "")


def test_after_our_close_send_refuses_with_our_code():
    proto = WebSocketProtocol()
    proto.close(4000, "done")
    with pytest.raises(ConnectionClosed) as info:
        proto.send(Message.ping(b""))
    assert (info.value.code, info.value.reason) == (4000, "done")


def test_fail_sends_the_fixed_reason_for_the_code():
    for code, reason in (
        (1002, "protocol error"),
        (1007, "invalid frame payload data"),
        (1009, "message too big"),
        (1011, "protocol error"),
    ):
        proto = WebSocketProtocol()
        assert (
            proto.fail(code)
            == b"\x88" + bytes((2 + len(reason),)) + struct.pack("!H", code) + reason.encode()
        )
        assert (proto.close_code, proto.close_reason) == (code, reason)
    proto = WebSocketProtocol()
    assert proto.fail(1008, "policy") == b"\x88\x08\x03\xf0policy"
    proto = WebSocketProtocol()
    proto.close(1000)
    assert proto.fail(1011) == b"" and (proto.state, proto.close_code, proto.close_reason) == (
        ProtocolState.CLOSED,
        1000,
        "",
    )


def test_close_without_a_code_sends_an_empty_close():
    proto = WebSocketProtocol()
    assert proto.close(None) == b"\x88\x00"
    assert (proto.state, proto.close_code) == (ProtocolState.CLOSING, 1005)


@pytest.mark.parametrize("make", [WebSocketProtocol, server_deflate], ids=["plain", "deflate"])
def test_a_servers_control_frames_are_exact(make):
    proto = make()
    assert proto.send(Message.ping(b"hi")) == b"\x89\x02hi"
    assert proto.send(Message.pong(b"ho")) == b"\x8a\x02ho"
    assert proto.answer(Message.ping(b"yo")) == b"\x8a\x02yo"
    assert proto.send(Message.ping(b"p" * 125)) == b"\x89\x7d" + b"p" * 125
    for message in (Message.ping(b"p" * 126), Message.pong(b"p" * 126)):
        with pytest.raises(ValueError, match=r"^control frame payloads are limited to 125 bytes$"):
            proto.send(message)
    with pytest.raises(ValueError, match=r"^control frame payloads are limited to 125 bytes$"):
        proto.answer(Message.ping(b"p" * 126))


def test_a_clients_frames_are_masked_with_fresh_keys():
    proto = WebSocketProtocol(client=True)
    frames = [
        proto.send(Message.ping(b"hi")),
        proto.send(Message.pong(b"ho")),
        proto.answer(Message.ping(b"yo")),
    ]
    frames += [proto.send_text("té"), proto.send_bytes(b"\x00\x01")]
    heads = [b"\x89\x82", b"\x8a\x82", b"\x8a\x82", b"\x81\x83", b"\x82\x82"]
    payloads = [b"hi", b"ho", b"yo", "té".encode(), b"\x00\x01"]
    for data, head, payload in zip(frames, heads, payloads, strict=True):
        assert data[:2] == head and unmask(data[6:], data[2:6]) == payload
    keys = [data[2:6] for data in frames]
    keys += [proto.send_bytes(b"")[2:6] for _ in range(130)]  # past the 64 keys of one draw
    assert len(set(keys)) == len(keys)
    # a fresh protocol starts from fresh keys too
    assert (
        WebSocketProtocol(client=True).send_bytes(b"")[2:6]
        != WebSocketProtocol(client=True).send_bytes(b"")[2:6]
    )


@pytest.mark.parametrize(
    ("length", "head"),
    [
        (126, b"\x82\xfe\x00\x7e"),
        (65535, b"\x82\xfe\xff\xff"),
        (65536, b"\x82\xff" + struct.pack("!Q", 65536)),
    ],
)
def test_a_clients_long_frames_have_the_shortest_length_and_a_mask(length, head):
    payload = bytes(range(256)) * (length // 256 + 1)
    payload = payload[:length]
    proto = WebSocketProtocol(client=True)
    data = proto.send_bytes(payload)
    assert data[: len(head)] == head
    key = data[len(head) : len(head) + 4]
    assert unmask(data[len(head) + 4 :], key) == payload
    text = proto.send_text("a" * length)
    assert text[0] == 0x81 and text[1 : len(head)] == head[1:]
    ping = proto.send(Message.ping(b"x" * 125))
    assert ping[:2] == b"\x89\xfd"


def test_a_client_with_deflate_compresses_and_masks():
    deflate = deflate_from_response([], 1 << 20)
    proto = WebSocketProtocol(client=True, deflate=deflate)
    data = proto.send_text("a" * 100)
    assert data[0] == 0xC1 and data[1] & 0x80
    body = unmask(data[6:], data[2:6])
    assert zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff") == b"a" * 100


def test_parsing_fast_is_false_while_wsproto_holds_a_fragmented_message():
    proto = WebSocketProtocol()
    assert feed(proto, frame(0x1, b"he", fin=False)) == []
    assert proto.parsing_fast is False
    assert feed(proto, frame(0x0, b"llo")) == [Message.text("hello")]
    assert proto.parsing_fast is True


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
def test_a_partial_long_frame_waits_on_the_fast_path(client):
    for opcode, size, limit in (
        (0x1, 300, 1000),
        (0x2, 70000, 1 << 20),
        (0x2, 300, 300),
        (0x1, 70000, 70000),
    ):
        proto = WebSocketProtocol(client=client, max_message_size=limit)
        data = frame(opcode, b"a" * size, mask=not client)
        assert feed(proto, data[: len(data) // 2]) == [] and proto.parsing_fast is True
        assert len(feed(proto, data[len(data) // 2 :])) == 1 and proto.parsing_fast is True


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
def test_a_long_header_cut_short_after_another_frame_waits(client):
    first = frame(0x2, b"x", mask=not client)
    for head in (
        struct.pack("!BBH", 0x82, 0xFE if not client else 0x7E, 300),
        struct.pack("!BBQ", 0x82, 0xFF if not client else 0x7F, 70000),
    ):
        for cut in range(1, len(head)):
            proto = WebSocketProtocol(client=client, max_message_size=1 << 20)
            assert feed(proto, first + head[:cut]) == [Message.binary(b"x")]
            assert proto.parsing_fast is True, cut


def test_every_send_after_the_peers_close_raises_its_code_and_reason():
    proto = WebSocketProtocol()
    feed(proto, frame(0x8, struct.pack("!H", 1001) + b"away"))
    for send in (proto.send_text, proto.send_bytes):
        with pytest.raises(ConnectionClosed) as info:
            send("x" if send is proto.send_text else b"x")
        assert (info.value.code, info.value.reason) == (1001, "away")


def test_send_refuses_a_close_and_what_is_not_a_message():
    from ignitia_sync.message import not_a_message

    proto = WebSocketProtocol()
    with pytest.raises(TypeError) as info:
        proto.send(Message.close())
    assert str(info.value) == "a Close is sent with close(), not send()"
    with pytest.raises(TypeError) as info:
        proto.send(42)  # type: ignore[arg-type]
    assert str(info.value) == str(not_a_message(42))


def test_close_by_default_is_1000_without_a_reason():
    proto = WebSocketProtocol()
    assert proto.close() == b"\x88\x02\x03\xe8"
    assert (proto.state, proto.close_code, proto.close_reason) == (ProtocolState.CLOSING, 1000, "")
    assert proto.close() == b""
