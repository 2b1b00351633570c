"""Envelopes stamped with their publish time (b, d): read as B and D, while the old forms decode
byte for byte as before (an older process's messages, and a newer one's with publish_times off)."""

from __future__ import annotations

import struct

import pytest

from ignitia_sync import Message
from ignitia_sync.redis.envelope import _BROADCAST, _DIRECT, decode, encode, encode_disconnect, published_at

SENDER = b"0123456789abcdef"


@pytest.mark.parametrize("message", [Message.text("héllo"), Message.binary(b"\x00\x01")])
@pytest.mark.parametrize("kind,id", [(_BROADCAST, None), (_DIRECT, "alice")])
def test_a_stamped_envelope_decodes_as_the_unstamped_one(message, kind, id):
    plain = encode(kind, message, SENDER, id)
    stamped = encode(kind, message, SENDER, id, published=1234.5)
    assert stamped[:1] == kind.lower() and len(stamped) == len(plain) + 8
    assert stamped[2:18] == SENDER  # where every process looks for its own messages
    assert decode(stamped) == decode(plain) == (kind, SENDER, id, message)
    assert published_at(stamped) == 1234.5
    assert published_at(plain) is None


def test_the_old_forms_are_unchanged():
    assert encode(_BROADCAST, Message.text("hi"), SENDER) == b"Bt" + SENDER + b"hi"
    assert encode(_DIRECT, Message.text("hi"), SENDER, "a") == b"Dt" + SENDER + b"\x00\x01ahi"
    assert decode(b"Bb" + SENDER + b"\xff")[3] == Message.binary(b"\xff")
    assert published_at(encode_disconnect(SENDER, "alice", 1008, "bye")) is None


@pytest.mark.parametrize("data", [
    b"bt" + SENDER + b"\x00\x00\x00",  # the stamp cut short
    b"dt" + SENDER + struct.pack("!d", 1.0) + b"\x00",  # a direct send's id length cut short
    b"bx" + SENDER + struct.pack("!d", 1.0) + b"hi",  # unknown message type
])
def test_a_broken_stamped_envelope_is_rejected(data):
    with pytest.raises(ValueError):
        decode(data)
