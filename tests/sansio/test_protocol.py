"""The sans-I/O protocol layer: bytes in, messages and bytes out. No sockets here."""

from __future__ import annotations

import struct
import zlib

import pytest

from ignitia_sync import ConnectionClosed, Message, ProtocolError
from ignitia_sync.message import CloseFrame
from ignitia_sync.sansio.protocol import ProtocolState, WebSocketProtocol, negotiate_deflate
from tests.wire import deflate, frame


def feed(proto: WebSocketProtocol, data: bytes) -> list[Message]:
    proto.receive_data(data)
    return list(proto.events())


def test_text_binary_and_64_bit_lengths():
    proto = WebSocketProtocol(max_message_size=1 << 20)
    big = bytes(range(256)) * 400  # 102,400 bytes: 8-byte length
    assert feed(proto, frame(0x1, b"hi") + frame(0x2, big)) == [Message.text("hi"), Message.binary(big)]
    assert proto.send(Message.binary(big))[:10] == b"\x82\x7f" + struct.pack("!Q", len(big))
    assert proto.send(Message.text("x" * 300))[:4] == b"\x81\x7e\x01\x2c"


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_any_split_of_the_stream_gives_the_same_messages(chunk):
    stream = frame(0x1, "zé".encode(), fin=False) + frame(0x9, b"p") + frame(0x0, b"ro") + frame(0x2, b"\x00" * 300)
    proto = WebSocketProtocol()
    got: list[Message] = []
    for i in range(0, len(stream), chunk):
        got += feed(proto, stream[i : i + chunk])
    assert got == [Message.ping(b"p"), Message.text("zéro"), Message.binary(b"\x00" * 300)]
    assert proto.answer(got[0]) == b"\x8a\x01p" and proto.data_to_send() == b""


def test_utf8_split_across_fragments_is_fine_but_invalid_utf8_fails_1007():
    proto = WebSocketProtocol()
    euro = "€".encode()
    assert feed(proto, frame(0x1, euro[:1], fin=False) + frame(0x0, euro[1:])) == [Message.text("€")]
    with pytest.raises(ProtocolError) as info:
        feed(proto, frame(0x1, b"ok\xc3\x28"))
    assert info.value.code == 1007
    assert proto.fail(1007)[:4] == b"\x88\x1c\x03\xef"
    assert proto.state is ProtocolState.CLOSED and proto.close_code == 1007


def test_messages_before_a_bad_frame_are_yielded_first():
    proto = WebSocketProtocol()
    proto.receive_data(frame(0x1, b"good") + frame(0x3, b"bad"))
    events = proto.events()
    assert next(events) == Message.text("good")
    assert proto.send(Message.text("answer"))  # still open for the answer
    with pytest.raises(ProtocolError) as info:
        next(events)
    assert info.value.code == 1002


def test_size_limit_is_checked_at_the_header_and_across_fragments():
    proto = WebSocketProtocol(max_message_size=100)
    with pytest.raises(ProtocolError) as info:
        feed(proto, frame(0x2, b"", length=1 << 40)[:14])  # only the header has arrived
    assert info.value.code == 1009
    proto = WebSocketProtocol(max_message_size=100)
    assert feed(proto, frame(0x2, b"x" * 60, fin=False)) == []
    with pytest.raises(ProtocolError):
        feed(proto, frame(0x0, b"x" * 60))


def test_compression_bomb_never_inflates_past_the_limit():
    extension, header = negotiate_deflate(["permessage-deflate"], 1000)
    proto = WebSocketProtocol(max_message_size=1000, deflate=extension)
    assert header == "permessage-deflate"
    assert feed(proto, frame(0x2, deflate(b"a" * 1000), rsv1=True)) == [Message.binary(b"a" * 1000)]
    bomb = deflate(b"\x00" * (50 << 20))
    proto.receive_data(frame(0x2, bomb, rsv1=True))
    with pytest.raises(ProtocolError) as info:
        list(proto.events())
    assert info.value.code == 1009
    assert extension._inflated <= 1001  # type: ignore[union-attr]


def test_compressed_output_round_trips():
    extension, _ = negotiate_deflate(["permessage-deflate; server_no_context_takeover"], 1 << 20)
    proto = WebSocketProtocol(deflate=extension)
    data = proto.send(Message.text("hello " * 50))
    assert data[0] == 0xC1  # FIN + RSV1 + text
    assert zlib.decompressobj(-15).decompress(data[2:] + b"\x00\x00\xff\xff") == b"hello " * 50


def test_close_handshake_started_by_the_peer():
    proto = WebSocketProtocol()
    got = feed(proto, frame(0x8, struct.pack("!H", 1001) + b"going"))
    assert got == [Message.Close(CloseFrame(1001, "going"))]
    assert proto.data_to_send() == b"\x88\x07\x03\xe9going"
    assert proto.state is ProtocolState.CLOSED and proto.close_code == 1001
    with pytest.raises(ConnectionClosed):
        proto.send(Message.text("late"))


def test_close_handshake_started_by_us_and_close_without_code():
    proto = WebSocketProtocol()
    assert proto.close(1000, "bye") == b"\x88\x05\x03\xe8bye"
    assert proto.state is ProtocolState.CLOSING
    assert proto.close(1000) == b""  # idempotent
    assert feed(proto, frame(0x1, b"late") + frame(0x8)) == [Message.text("late"), Message.Close(None)]
    assert proto.state is ProtocolState.CLOSED and proto.close_code == 1000


@pytest.mark.parametrize("payload", [b"\x03", struct.pack("!H", 999), struct.pack("!H", 1005), struct.pack("!H", 1000) + b"\xff"])
def test_bad_close_frames_fail_the_connection(payload):
    proto = WebSocketProtocol()
    with pytest.raises(ProtocolError):
        feed(proto, frame(0x8, payload))


def test_end_of_stream_without_close_is_1006():
    proto = WebSocketProtocol()
    assert feed(proto, b"") == []
    assert proto.state is ProtocolState.CLOSED and proto.close_code == 1006


def test_client_role_masks_and_refuses_masked_server_frames():
    client = WebSocketProtocol(client=True)
    data = client.send(Message.text("hi"))
    assert data[1] & 0x80 and len(data) == 2 + 4 + 2
    with pytest.raises(ProtocolError):
        feed(client, frame(0x1, b"x", mask=True))
    client = WebSocketProtocol(client=True)
    assert feed(client, frame(0x1, b"x", mask=False)) == [Message.text("x")]


def test_control_frames_over_125_bytes_cannot_be_sent():
    with pytest.raises(ValueError):
        WebSocketProtocol().send(Message.ping(b"x" * 126))


def test_fast_path_hands_over_to_wsproto_and_comes_back():
    proto = WebSocketProtocol()
    assert feed(proto, frame(0x1, b"a")) == [Message.text("a")] and proto.parsing_fast
    assert feed(proto, frame(0x1, b"b", fin=False)) == [] and not proto.parsing_fast  # wsproto holds a fragment
    assert feed(proto, frame(0x0, b"c") + frame(0x2, b"d")) == [Message.text("bc"), Message.binary(b"d")]
    assert proto.parsing_fast  # idle again: the common frames bypass wsproto
    assert feed(proto, frame(0x2, b"e" * 70000)) == [Message.binary(b"e" * 70000)]


def test_a_client_offering_client_max_window_bits_8_is_accepted_and_inflated():
    """RFC 7692 allows 8; zlib's raw inflate takes 9 at least, and a larger window reads a smaller one."""
    import os
    import zlib

    from ignitia_sync.sansio.protocol import WebSocketProtocol, negotiate_deflate, unmask

    extension, answer = negotiate_deflate(["permessage-deflate; client_max_window_bits=8"], 1 << 20)
    assert answer == "permessage-deflate; client_max_window_bits=8"
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -9, 8)
    body = (compressor.compress(b"hello " * 100) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    key = os.urandom(4)
    masked = unmask(body, key)
    server = WebSocketProtocol(deflate=extension)
    server.receive_data(bytes((0xC1, 0xFE)) + len(masked).to_bytes(2, "big") + key + masked
                        if len(masked) >= 126 else bytes((0xC1, 0x80 | len(masked))) + key + masked)
    assert [message.data for message in server.events()] == ["hello " * 100]


def test_the_names_split_out_to_frames_and_deflate_are_still_importable_from_protocol():
    """protocol.py re-exports them (and the old flat path ignitia_sync.protocol is that module)."""
    import importlib

    from ignitia_sync.sansio import deflate, frames, protocol

    old_path = importlib.import_module("ignitia_sync.protocol")
    moved = {
        frames: ("encode_frame", "encode_shared_frame", "unmask", "_frame"),
        deflate: ("negotiate_deflate", "deflate_from_response", "_BoundedDeflate", "_SizeGuard",
                  "FREE_FRAGMENTS", "FRAGMENT_COST"),
    }
    for module, names in moved.items():
        for name in names:
            assert getattr(protocol, name) is getattr(module, name) is getattr(old_path, name), name
    assert {"encode_frame", "encode_shared_frame", "unmask", "negotiate_deflate", "deflate_from_response"} <= set(
        protocol.__all__
    )
