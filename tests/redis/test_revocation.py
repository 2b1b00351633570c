"""Revocations over Redis (Registry.disconnect): the envelope, what arrives from elsewhere, garbage, Redis down.

Our server in a thread with a RedisBackplane on a real redis-server; "another process" is a
plain redis-py client publishing envelopes on ``ignitia:all``; clients are python-websockets.
The revocation across real processes is in test_revocation_processes.py.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from ignitia_sync import Message, Router
from ignitia_sync.redis import decode, encode
from ignitia_sync.redis.envelope import encode_disconnect
from tests.apps import closed_with, still_open
from tests.conftest import url
from tests.waiting import wait_for

OTHER = b"f" * 16  # the process id of "another process"


def signed_in(ws):
    """The first message names the user; each later one is echoed."""
    ws.registry.identify(ws, ws.recv().data)
    ws.send_text("hello")
    for message in ws:
        ws.send(message)


@pytest.fixture
def sign_in() -> Iterator[Callable[..., ClientConnection]]:
    """``sign_in(server, name)``: a client identified as ``name``, closed after the test."""
    with contextlib.ExitStack() as stack:

        def open_one(server, name: str) -> ClientConnection:
            client = stack.enter_context(connect(url(server, "/ws"), open_timeout=10))
            client.send(name)
            assert client.recv(timeout=10) == "hello"
            return client

        yield open_one


@pytest.fixture
def server(serve, redis_server):
    server = serve(Router().websocket("/ws", signed_in), backplane=redis_server.url)
    return server


def backplane_stats(server) -> dict[str, object]:
    return dict(server.stats()["backplane"])


def listening(server, redis_server) -> None:
    wait_for(lambda: backplane_stats(server)["up"] and redis_server.subscribers("ignitia:all") == 1,
             "the server to listen on ignitia:all")


def revocation(id: bytes, code: int, reason: bytes, type_byte: bytes = b"c") -> bytes:
    """An X envelope built by hand, so that it can be wrong in every way."""
    return b"X" + type_byte + OTHER + struct.pack("!H", len(id)) + id + struct.pack("!H", code) + reason


# -- the envelope ------------------------------------------------------------------------------

def test_the_older_envelopes_decode_as_before():
    assert decode(b"Bt" + OTHER + b"hi") == (b"B", OTHER, None, Message.text("hi"))
    assert decode(b"Db" + OTHER + b"\x00\x05alice\x00\x01") == (b"D", OTHER, "alice", Message.binary(b"\x00\x01"))
    assert encode(b"D", Message.text("hi"), OTHER, "alice") == b"Dt" + OTHER + b"\x00\x05alicehi"


def test_a_revocation_round_trips_as_a_close():
    envelope = encode_disconnect(OTHER, "ünïcode", 4001, "signed out — bye")
    assert decode(envelope) == (b"X", OTHER, "ünïcode", Message.close_with_reason(4001, "signed out — bye"))


GARBAGE = [
    b"X",                                             # shorter than the head
    b"Xc" + OTHER,                                    # no id length
    b"Xc" + OTHER + b"\x00\x09alice",                 # id shorter than its length
    b"Xc" + OTHER + b"\x00\x05alice\x03",             # half a close code
    revocation(b"alice", 1008, b"", type_byte=b"t"),  # a revocation is a Close, not Text
    revocation(b"", 1008, b""),                       # no id
    revocation(b"#1", 1008, b""),                     # an automatic id: a different connection everywhere
    revocation(b"\xffalice", 1008, b""),              # id not UTF-8
    revocation(b"alice", 1011, b""),                  # a code an application may not send
    revocation(b"alice", 1006, b""),
    revocation(b"alice", 5000, b""),
    revocation(b"alice", 1008, b"\xff"),              # reason not UTF-8
    revocation(b"alice", 1008, b"x" * 124),           # reason too long for a Close frame
    b"Bc" + OTHER + b"x",                             # a Close type outside a revocation
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_decode_refuses_what_is_not_a_revocation(garbage):
    with pytest.raises(ValueError):
        decode(garbage)


# -- through Redis -----------------------------------------------------------------------------

def test_a_revocation_from_another_process_closes_the_local_connection_only(server, redis_server, sign_in):
    alice, bob = sign_in(server, "alice"), sign_in(server, "bob")
    listening(server, redis_server)
    redis_server.client().publish("ignitia:all", encode_disconnect(OTHER, "alice", 4002, "banned"))
    assert closed_with(alice) == (4002, "banned")
    still_open(bob)
    assert backplane_stats(server)["rejected"] == 0


def test_garbage_is_counted_as_rejected_and_closes_nobody(server, redis_server, sign_in):
    alice = sign_in(server, "alice")
    listening(server, redis_server)
    publisher = redis_server.client()
    for garbage in GARBAGE:
        publisher.publish("ignitia:all", garbage)
    wait_for(lambda: backplane_stats(server)["rejected"] == len(GARBAGE), "every piece of garbage rejected")
    still_open(alice)
    publisher.publish("ignitia:all", encode_disconnect(OTHER, "alice", 1008, "after the garbage"))
    assert closed_with(alice) == (1008, "after the garbage")  # the listener lived through it


def test_the_caller_publishes_one_revocation_and_does_not_act_on_it_twice(server, redis_server, sign_in):
    alice = sign_in(server, "alice")
    listening(server, redis_server)
    published = backplane_stats(server)["published"]
    with redis_server.client().pubsub() as watcher:
        watcher.subscribe("ignitia:all")
        assert watcher.get_message(timeout=10)["type"] == "subscribe"
        assert server.registry.disconnect("alice", 3001, "elsewhere too") == 1
        heard = watcher.get_message(timeout=10)
    assert decode(heard["data"])[::2] == (b"X", "alice")
    assert decode(heard["data"])[3] == Message.close_with_reason(3001, "elsewhere too")
    assert closed_with(alice) == (3001, "elsewhere too")
    wait_for(lambda: backplane_stats(server)["published"] == published + 1, "the revocation counted as published")
    assert backplane_stats(server)["received"] == 0  # its own, skipped


def test_an_unknown_id_is_published_closes_nothing_and_raises_nothing(server, redis_server, sign_in):
    bob = sign_in(server, "bob")
    listening(server, redis_server)
    assert server.registry.disconnect("nobody", 1008, "x") == 0
    wait_for(lambda: backplane_stats(server)["published"] >= 1, "the revocation published")
    still_open(bob)


def test_with_redis_down_the_local_connection_is_closed_and_the_rest_dropped_and_counted(
    server, redis_server, sign_in
):
    alice = sign_in(server, "alice")
    listening(server, redis_server)
    redis_server.kill()
    wait_for(lambda: not backplane_stats(server)["up"], "the backplane to see Redis gone")
    dropped = backplane_stats(server)["dropped"]
    assert server.registry.disconnect("alice", 1008, "signed out") == 1  # returns at once, raises nothing
    assert closed_with(alice) == (1008, "signed out")
    assert backplane_stats(server)["dropped"] == dropped + 1  # the other processes never hear it


def test_an_emitter_revokes_from_a_process_that_serves_no_websockets(server, redis_server, sign_in):
    from ignitia_sync.redis import Emitter

    alice, bob = sign_in(server, "alice"), sign_in(server, "bob")
    listening(server, redis_server)
    emitter = Emitter(redis_server.url)
    try:
        with pytest.raises(ValueError, match="1006"):
            emitter.disconnect("alice", 1006)  # reserved: never sent in a Close
        with pytest.raises(ValueError, match="application ids"):
            emitter.disconnect("#3")  # an automatic id: not the application's to revoke
        assert emitter.disconnect("alice", 4003, "password changed") == 1  # one process listens
    finally:
        emitter.close()
    assert closed_with(alice) == (4003, "password changed")
    still_open(bob)
