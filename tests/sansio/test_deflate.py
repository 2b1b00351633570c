"""sansio/deflate.py: permessage-deflate negotiation (RFC 7692), the bounded inflate, the size guard.

The extensions are driven by wsproto's own frame parser here, without WebSocketProtocol:
``tests/sansio/test_protocol.py`` covers them inside the protocol.
"""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import CloseReason, FrameProtocol, ParseFailed

from ignitia_sync.sansio.deflate import (
    FRAGMENT_COST,
    FREE_FRAGMENTS,
    _SizeGuard,
    deflate_from_response,
    negotiate_deflate,
)
from tests.wire import deflate, frame


def parse(extensions, data: bytes) -> list[bytes]:
    """The payloads of the frames a server parses from ``data`` with these extensions."""
    proto = FrameProtocol(client=False, extensions=extensions)
    proto.receive_bytes(data)
    return [bytes(got.payload) for got in proto.received_frames()]


def refused(extensions, data: bytes) -> CloseReason:
    with pytest.raises(ParseFailed) as info:
        parse(extensions, data)
    return info.value.code


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        ("permessage-deflate", "permessage-deflate"),
        ("permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits=12"),
        ("permessage-deflate; client_max_window_bits=10", "permessage-deflate; client_max_window_bits=10"),
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=10"),
        ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ("permessage-deflate; unknown_param", None),
        ("permessage-deflate; server_max_window_bits=8", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; client_max_window_bits=abc", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("x-webkit-deflate-frame", None),
        ("permessage-deflate; server_max_window_bits=8, permessage-deflate", "permessage-deflate"),
    ],
)
def test_deflate_negotiation_follows_rfc_7692(offer, expected):
    assert negotiate_deflate([offer], 1024)[1] == expected


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        ("permessage-deflate; client_max_window_bits=16", None),
        ("permessage-deflate; client_max_window_bits=7", None),
        ("permessage-deflate; server_no_context_takeover=1", None),  # a flag takes no value
        ("permessage-deflate; client_max_window_bits; client_max_window_bits=10", None),
        ('permessage-deflate; client_max_window_bits="10"', "permessage-deflate; client_max_window_bits=10"),
        ("PerMessage-Deflate; Server_Max_Window_Bits=10", "permessage-deflate; server_max_window_bits=10"),
    ],
)
def test_deflate_negotiation_bounds_quotes_and_case(offer, expected):
    assert negotiate_deflate([offer], 1024)[1] == expected


def test_a_shared_key_only_without_server_context_takeover():
    """Forced by no_context_takeover, each message is compressed from scratch with our window and memLevel."""
    extension, answer = negotiate_deflate(["permessage-deflate"], 1024, no_context_takeover=True)
    assert answer == "permessage-deflate; server_no_context_takeover"
    assert extension.shared_key() == (12, 5)
    extension, _ = negotiate_deflate(
        ["permessage-deflate; server_max_window_bits=11"], 1024, server_window_bits=10, mem_level=4,
        no_context_takeover=True,
    )
    assert extension.shared_key() == (10, 4)
    extension, _ = negotiate_deflate(["permessage-deflate"], 1024)
    assert extension.shared_key() is None


@pytest.mark.parametrize(
    "params",
    [["client_max_window_bits"], ["client_max_window_bits=8"], ["server_max_window_bits=8"], ["unknown"],
     ["server_no_context_takeover", "server_no_context_takeover"], ["client_max_window_bits=16"]],
)
def test_a_client_refuses_a_bad_answer(params):
    with pytest.raises(ValueError):
        deflate_from_response(params, 1024)


def test_a_client_compresses_with_the_smaller_of_its_window_and_the_servers():
    assert deflate_from_response(["client_max_window_bits=10"], 1024).client_max_window_bits == 10
    assert deflate_from_response([], 1024, client_window_bits=11).client_max_window_bits == 11


def test_the_bounded_inflate_allows_the_limit_exactly_and_refuses_one_byte_more_with_1009():
    extension, _ = negotiate_deflate(["permessage-deflate; client_no_context_takeover"], 1000)
    exact = frame(0x2, deflate(b"a" * 1000), rsv1=True)
    assert parse([extension], exact + exact) == [b"a" * 1000] * 2  # the count starts again per message
    extension, _ = negotiate_deflate(["permessage-deflate; client_no_context_takeover"], 1000)
    assert refused([extension], frame(0x2, deflate(b"a" * 1001), rsv1=True)) is CloseReason.MESSAGE_TOO_BIG


def test_the_bounded_inflate_counts_a_fragmented_message_as_a_whole():
    extension, _ = negotiate_deflate(["permessage-deflate; client_no_context_takeover"], 1000)
    body = deflate(bytes(range(256)) * 4)  # 1,024 bytes inflated, in two fragments of 600-odd and 400-odd
    half = len(body) // 2
    first = frame(0x2, body[:half], rsv1=True, fin=False) + frame(0x9, b"p")  # a ping between the fragments
    assert len(parse([negotiate_deflate(["permessage-deflate"], 1000)[0]], first)) == 2  # each alone is in bounds
    assert refused([extension], first + frame(0x0, body[half:])) is CloseReason.MESSAGE_TOO_BIG
    assert extension._inflated <= 1001


def test_the_bounded_inflate_refuses_a_compression_bomb_without_inflating_it():
    extension, _ = negotiate_deflate(["permessage-deflate"], 1000)
    bomb = frame(0x2, deflate(b"\x00" * (50 << 20)), rsv1=True)  # about 50 KB that inflate to 50 MiB
    assert refused([extension], bomb) is CloseReason.MESSAGE_TOO_BIG
    assert extension._inflated <= 1001


def test_bad_compressed_data_is_1007_and_a_compressed_control_frame_1002():
    extension, _ = negotiate_deflate(["permessage-deflate"], 1000)
    assert refused([extension], frame(0x2, b"\xff\xff\xff\xff", rsv1=True)) is CloseReason.INVALID_FRAME_PAYLOAD_DATA
    extension, _ = negotiate_deflate(["permessage-deflate"], 1000)
    assert refused([extension], frame(0x9, b"p", rsv1=True)) is CloseReason.PROTOCOL_ERROR


def test_the_size_guard_refuses_at_the_header_with_slack_for_a_compressed_message():
    """Uncompressed: the limit itself. Compressed: deflate's worst-case growth, max // 64 + 1024, on top."""
    assert refused([_SizeGuard(1000)], frame(0x2, b"", length=1001)) is CloseReason.MESSAGE_TOO_BIG
    assert parse([_SizeGuard(1000)], frame(0x2, b"x" * 1000)) == [b"x" * 1000]
    slack = 1000 + 1000 // 64 + 1024
    extension, _ = negotiate_deflate(["permessage-deflate"], 1000)
    head_only = frame(0x2, b"", length=slack, rsv1=True)  # no payload yet: the header decides
    assert parse([extension, _SizeGuard(1000)], head_only) == []
    extension, _ = negotiate_deflate(["permessage-deflate"], 1000)
    too_big = frame(0x2, b"", length=slack + 1, rsv1=True)
    assert refused([extension, _SizeGuard(1000)], too_big) is CloseReason.MESSAGE_TOO_BIG


def test_continuation_frames_past_the_free_ones_cost_fragment_cost_each():
    guard = _SizeGuard(3 * FRAGMENT_COST)
    proto = FrameProtocol(client=False, extensions=[guard])
    proto.receive_bytes(frame(0x2, b"", fin=False) + frame(0x0, b"", fin=False) * (FREE_FRAGMENTS + 3))
    assert len(list(proto.received_frames())) == 1 + FREE_FRAGMENTS + 3  # exactly at the limit
    proto.receive_bytes(frame(0x0, b"", fin=False))
    with pytest.raises(ParseFailed) as info:
        list(proto.received_frames())
    assert info.value.code is CloseReason.MESSAGE_TOO_BIG
