"""redis/envelope.py's orders to a process: inspections (I) and closes of one connection (K); pure code."""

from __future__ import annotations

import json
import struct

import pytest

from ignitia_sync import Message
from ignitia_sync.redis import decode
from ignitia_sync.redis.envelope import (
    _MAX_REPLY_TTL,
    _UID_SIZE,
    _Names,
    check_close_one,
    decode_close_one,
    decode_inspect,
    encode_close_one,
    encode_disconnect,
    encode_inspect,
)
from ignitia_sync.redis.inspection import _parsed, answer_document

SENDER = b"a" * _UID_SIZE


@pytest.mark.parametrize("key", [b"{ignitia}:inspect:0123", b"k", "{zoë}:inspect:🙂".encode(), b"x" * 65535])
@pytest.mark.parametrize("ttl_ms", [1, 2500, _MAX_REPLY_TTL])
def test_an_inspection_round_trips(key, ttl_ms):
    assert decode_inspect(encode_inspect(SENDER, key, ttl_ms)) == (SENDER, key, ttl_ms)


def test_the_inspection_layout_is_the_documented_one():
    assert encode_inspect(SENDER, b"ab", 7) == b"Iq" + SENDER + b"\x00\x02ab" + struct.pack("!I", 7)


@pytest.mark.parametrize("id", ["#1", "#17", "#" + "9" * 23])
@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1008, "banned"), (4999, "é" * 61), (3000, "x" * 123)])
def test_a_close_of_one_connection_round_trips(id, code, reason):
    assert decode_close_one(encode_close_one(SENDER, id, code, reason)) == (SENDER, id, code, reason)


def test_the_close_layout_is_the_documented_one():
    assert encode_close_one(SENDER, "#5", 4000, "x") == b"Kc" + SENDER + b"\x00\x02#5\x0f\xa0x"


@pytest.mark.parametrize("bad", [
    b"",
    b"Iq" + SENDER,  # no key length
    b"Iq" + SENDER + b"\x00\x02ab",  # no ttl
    b"Iq" + SENDER + b"\x00\x02ab\x00\x00\x00",  # a short ttl
    b"Iq" + SENDER + b"\x00\x02ab\x00\x00\x00\x07z",  # a byte too many
    b"Iq" + SENDER + b"\x00\x00" + struct.pack("!I", 7),  # no key
    b"Iq" + SENDER + b"\x00\x02ab" + struct.pack("!I", 0),  # a ttl of 0
    b"Iq" + SENDER + b"\x00\x02ab" + struct.pack("!I", _MAX_REPLY_TTL + 1),  # too long
    b"It" + SENDER + b"\x00\x02ab" + struct.pack("!I", 7),  # wrong type
    b"Kc" + SENDER + b"\x00\x02ab" + struct.pack("!I", 7),  # another kind
])
def test_a_malformed_inspection_is_refused(bad):
    with pytest.raises(ValueError):
        decode_inspect(bad)


@pytest.mark.parametrize("bad", [
    b"",
    b"Kc" + SENDER,
    b"Kc" + SENDER + b"\x00\x03#17",  # no code
    b"Kc" + SENDER + b"\x00\x03#17\x0f",  # half a code
    b"Kc" + SENDER + b"\x00\x05alice\x03\xf0",  # an application id, not a connection's own id
    b"Kc" + SENDER + b"\x00\x01#\x03\xf0",  # no digits
    b"Kc" + SENDER + b"\x00\x04#1a2\x03\xf0",
    b"Kc" + SENDER + b"\x00\x03#17\x03\xf3",  # 1011: not a revocation's code
    b"Kc" + SENDER + b"\x00\x03#17\x03\xee",  # 1006
    b"Kc" + SENDER + b"\x00\x03#17\x0f\xa0" + b"x" * 124,  # a reason over 123 bytes
    b"Kc" + SENDER + b"\x00\x03#17\x0f\xa0\xff",  # not UTF-8
    b"Kt" + SENDER + b"\x00\x03#17\x0f\xa0",  # wrong type
    b"Kc" + SENDER + b"\x00\x19#" + b"1" * 24 + b"\x0f\xa0",  # an id over 24 characters
])
def test_a_malformed_close_is_refused(bad):
    with pytest.raises(ValueError):
        decode_close_one(bad)


@pytest.mark.parametrize("envelope", [
    encode_inspect(SENDER, b"{ignitia}:inspect:ab", 2000), encode_close_one(SENDER, "#17", 4000, "bye"),
])
def test_decode_rejects_them_as_an_older_process_does(envelope):
    """An older process's decode() has only B, D, X (and b, d, T): it rejects and counts I and K."""
    with pytest.raises(ValueError, match="not an ignitia_sync envelope"):
        decode(envelope)


def test_decode_still_reads_what_it_read():
    assert decode(encode_disconnect(SENDER, "alice", 1008, ""))[3] == Message.close_with_reason(1008, "")


@pytest.mark.parametrize(("process", "id", "code", "reason", "error"), [
    ("0123456789ABCDEF", "#1", 1000, "", ValueError),  # upper case: not a uid
    ("0123456789abcde", "#1", 1000, "", ValueError),
    ("0123456789abcdef0", "#1", 1000, "", ValueError),
    ("0123456789abcdef", "17", 1000, "", ValueError),
    ("0123456789abcdef", "#17 ", 1000, "", ValueError),
    ("0123456789abcdef", "#1", 1011, "", ValueError),
    ("0123456789abcdef", "#1", 4000, "x" * 124, ValueError),
    (b"0123456789abcdef", "#1", 4000, "", TypeError),
    ("0123456789abcdef", 17, 4000, "", TypeError),
])
def test_check_close_one_refuses(process, id, code, reason, error):
    with pytest.raises(error):
        check_close_one(process, id, code, reason)


def test_reply_keys_share_the_hash_tag_of_the_prefix():
    assert _Names("chat").reply_prefix == b"{chat}:inspect:"


class Record:
    def __init__(self, id: str, rooms: list[str], pad: int = 0) -> None:
        self.data = {"id": id, "rooms": rooms, "pad": "p" * pad}

    def as_json(self):
        return self.data


def test_an_answer_counts_every_room_and_caps_the_records():
    records = [Record(f"#{n}", ["all", f"room{n % 3}"]) for n in range(10)]
    answer = json.loads(answer_document(SENDER, records, max_connections=4))
    assert [record["id"] for record in answer["connections"]] == ["#0", "#1", "#2", "#3"]
    assert answer["rooms"] == {"all": 10, "room0": 4, "room1": 3, "room2": 3}
    assert answer["connections_total"] == 10 and answer["rooms_total"] == 4 and answer["truncated"] is True
    assert answer["uid"] == SENDER.decode() and isinstance(answer["pid"], int) and answer["host"]
    assert _parsed(json.dumps(answer).encode()) == answer


def test_an_answer_stays_within_its_byte_bound():
    records = [Record(f"#{n}", [f"room{n}" * 40], pad=1000) for n in range(200)]
    document = answer_document(SENDER, records, max_connections=1000, max_bytes=64 * 1024)
    assert len(document) < 64 * 1024 + 1024
    answer = json.loads(document)
    assert 0 < len(answer["connections"]) < 200 and answer["truncated"] is True
    assert 0 < len(answer["rooms"]) < 200 and answer["rooms_total"] == 200


def test_an_answer_that_fits_is_whole():
    answer = json.loads(answer_document(SENDER, [Record("#1", ["a", "b"])], max_connections=2))
    assert answer["truncated"] is False and answer["rooms"] == {"a": 1, "b": 1}


@pytest.mark.parametrize("bad", [b"", b"{", b"[]", b'{"uid": 1}', b'{"uid": "u", "pid": "1", "host": "h", '
                                 b'"connections": [], "rooms": {}}'])
def test_a_malformed_answer_is_left_out(bad):
    assert _parsed(bad) is None
