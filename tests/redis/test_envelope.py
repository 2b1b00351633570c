"""redis/envelope.py: the wire envelope, names and ids, with no server (pure code)."""

from __future__ import annotations

import ast
import pathlib
import struct

import pytest
from redis.crc import key_slot

from ignitia_sync import Message
from ignitia_sync.redis import decode, encode
from ignitia_sync.redis import envelope as envelope_module
from ignitia_sync.redis.envelope import (
    _BROADCAST,
    _DIRECT,
    _HEAD,
    _MAX_ID,
    _UID_SIZE,
    _WAKE,
    _as_message,
    _Names,
    _new_uid,
)

SENDER = b"a" * _UID_SIZE


@pytest.mark.parametrize("message", [
    Message.text("héllo"), Message.text(""), Message.text("B" * 40), Message.binary(b""),
    Message.binary(b"\x00\xff" * 100), Message.binary(SENDER),  # a payload that looks like a head
])
@pytest.mark.parametrize("id", [None, "alice", "", "zoë 🙂", "x" * _MAX_ID])
def test_every_message_round_trips_as_broadcast_or_direct(message, id):
    kind = _BROADCAST if id is None else _DIRECT
    assert decode(encode(kind, message, SENDER, id)) == (kind, SENDER, id, message)


def test_the_layout_is_the_documented_one():
    assert encode(_BROADCAST, Message.binary(b"\x01"), SENDER) == b"Bb" + SENDER + b"\x01"
    assert encode(_DIRECT, Message.text("hi"), SENDER, "é") == b"Dt" + SENDER + b"\x00\x02\xc3\xa9hi"


def test_the_shortest_envelope_is_the_head_alone():
    assert decode(b"Bt" + SENDER) == (_BROADCAST, SENDER, None, Message.text(""))
    assert decode(b"Db" + SENDER + b"\x00\x00") == (_DIRECT, SENDER, "", Message.binary(b""))
    assert len(b"Bt" + SENDER) == _HEAD


@pytest.mark.parametrize("bad", [
    b"",
    (b"Bt" + SENDER)[:-1],  # one byte short of a head
    b"Xt" + SENDER + b"hi",  # unknown kind
    _WAKE,  # a wake-up is never a message
    _WAKE + b"t" + SENDER,
    b"Bq" + SENDER + b"hi",  # unknown type
    b"Dt" + SENDER,  # direct without the id's length
    b"Dt" + SENDER + b"\x00",  # half a length
    b"Dt" + SENDER + b"\x00\x09ab",  # the length says more than there is
    b"Bt" + SENDER + b"\xff\xfe",  # a text that is not UTF-8
    b"Dt" + SENDER + b"\x00\x01\xffhi",  # an id that is not UTF-8
])
def test_what_is_not_one_of_our_envelopes_is_a_value_error(bad):
    with pytest.raises(ValueError):
        decode(bad)


@pytest.mark.parametrize("message", [Message.ping(b""), Message.pong(b""), Message.close_with_reason(1000, "")])
def test_control_messages_do_not_cross(message):
    with pytest.raises(TypeError, match="only Text and Binary"):
        encode(_BROADCAST, message, SENDER)


def test_an_id_longer_than_two_length_bytes_cannot_be_encoded():
    with pytest.raises(struct.error):  # as before the split: an application id of 64 KiB is a bug
        encode(_DIRECT, Message.text("hi"), SENDER, "x" * (_MAX_ID + 1))


def test_as_message_takes_str_bytes_likes_and_messages():
    assert _as_message("hi") == Message.text("hi")
    assert _as_message(b"\x00") == _as_message(bytearray(b"\x00")) == _as_message(memoryview(b"\x00"))
    assert _as_message(b"\x00") == Message.binary(b"\x00")
    message = Message.text("as is")
    assert _as_message(message) is message


def test_uids_are_fresh_ascii_hex_of_the_head_size():
    uids = {_new_uid() for _ in range(100)}
    assert len(uids) == 100
    for uid in uids:
        assert len(uid) == _UID_SIZE and int(uid, 16) >= 0 and uid.decode().isascii()


def test_the_directory_and_direct_channels_share_one_cluster_slot():
    names = _Names("chat")
    assert (names.all, names.room_prefix) == (b"chat:all", b"chat:room:")
    slot = key_slot(names.id_key("alice"))
    assert all(key_slot(names.proc_prefix + _new_uid()) == slot for _ in range(20))
    assert names.wake_prefix(b"0123").startswith("chat:wake:0123:")


def test_the_envelope_module_does_no_io():
    tree = ast.parse(pathlib.Path(envelope_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert not imported & {"gevent", "redis", "socket", "threading", "select"}, imported
