"""Property-based tests of the protocol layer (hypothesis): splits, fragmentation, garbage."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ignitia_sync import Message, ProtocolError
from ignitia_sync.sansio.protocol import ProtocolState, WebSocketProtocol, negotiate_deflate
from tests.wire import deflate, frame

messages = st.lists(
    st.one_of(
        st.text(max_size=300).map(Message.text),
        st.binary(max_size=70_000).map(Message.binary),
        st.binary(max_size=125).map(Message.ping),
    ),
    min_size=1,
    max_size=8,
)


def encode(message: Message, pieces: int, compressed: bool) -> bytes:
    """One message as 1..n frames (control frames always whole)."""
    if isinstance(message, Message.Ping):
        return frame(0x9, message.data)
    opcode = 0x1 if isinstance(message, Message.Text) else 0x2
    payload = message.data.encode() if isinstance(message, Message.Text) else message.data
    if compressed:
        payload = deflate(payload)
    size = max(1, -(-len(payload) // pieces))
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
    out = b""
    for index, chunk in enumerate(chunks):
        out += frame(opcode if index == 0 else 0x0, chunk, fin=index == len(chunks) - 1,
                     rsv1=compressed and index == 0)
    return out


def feed_in_pieces(proto: WebSocketProtocol, data: bytes, cuts: list[int]) -> list[Message]:
    got: list[Message] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        if cut == start:
            continue  # an empty chunk would mean end of stream
        proto.receive_data(data[start:cut])
        got += list(proto.events())
        start = cut
    return got


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.lists(st.integers(min_value=1, max_value=5), min_size=8, max_size=8),
       st.lists(st.integers(min_value=0), max_size=20), st.booleans())
def test_any_fragmentation_and_split_of_valid_traffic_gives_the_same_messages(msgs, pieces, cuts, compressed):
    extension = negotiate_deflate(["permessage-deflate; client_no_context_takeover"], 1 << 20)[0] if compressed else None
    proto = WebSocketProtocol(max_message_size=1 << 20, deflate=extension)
    data = b"".join(encode(m, pieces[i % len(pieces)], compressed) for i, m in enumerate(msgs))
    assert feed_in_pieces(proto, data, cuts) == msgs
    assert proto.state is ProtocolState.OPEN


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=10), st.booleans())
def test_garbage_raises_only_protocol_error_and_always_finishes(garbage, cuts, compressed):
    extension = negotiate_deflate(["permessage-deflate"], 4096)[0] if compressed else None
    proto = WebSocketProtocol(max_message_size=4096, deflate=extension)
    try:
        feed_in_pieces(proto, garbage, cuts)
    except ProtocolError as exc:
        assert exc.code in (1002, 1007, 1009)
        assert proto.fail(exc.code).startswith(b"\x88")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_masked_garbage_frames_raise_only_protocol_error(payload):
    proto = WebSocketProtocol(max_message_size=4096)
    for opcode in (0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB):
        proto = WebSocketProtocol(max_message_size=4096)
        try:
            proto.receive_data(frame(opcode, payload, fin=bool(payload[0] & 1), rsv1=bool(payload[0] & 2)))
            list(proto.events())
        except ProtocolError as exc:
            assert exc.code in (1002, 1007, 1009)
