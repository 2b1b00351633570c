"""The client role of the protocol, sans-I/O: every frame masked with a fresh CSPRNG key."""

from __future__ import annotations

from ignitia_sync import Message
from ignitia_sync.sansio.protocol import WebSocketProtocol


def test_every_client_frame_is_masked_with_its_own_key_and_the_server_reads_it():
    client, server = WebSocketProtocol(client=True), WebSocketProtocol()
    messages = [Message.text("a" * n) for n in (0, 1, 125, 126, 65535, 65536)] + [Message.binary(b"\x00" * 300)]
    keys = set()
    for message in messages:
        frame = client.send(message)
        assert frame[1] & 0x80  # the mask bit
        length = frame[1] & 0x7F
        offset = 2 + {126: 2, 127: 8}.get(length, 0)
        keys.add(frame[offset:offset + 4])
        server.receive_data(frame)
    assert list(server.events()) == messages
    assert len(keys) == len(messages)  # 4 random bytes each: a repeat would be a 1-in-2**32 event per pair


def test_a_server_frame_that_is_masked_fails_the_client_with_1002():
    client = WebSocketProtocol(client=True)
    client.receive_data(bytes([0x81, 0x82, 1, 2, 3, 4]) + bytes([ord("h") ^ 1, ord("i") ^ 2]))
    try:
        list(client.events())
    except Exception as exc:  # the ProtocolError the transport turns into close code 1002
        assert getattr(exc, "code", None) == 1002
    else:
        raise AssertionError("a masked frame from a server must fail the connection")


def test_the_client_answers_a_ping_with_a_masked_pong():
    client = WebSocketProtocol(client=True)
    client.receive_data(bytes([0x89, 0x02]) + b"hi")
    [ping] = client.events()
    assert ping == Message.ping(b"hi")
    pong = client.answer(ping)
    assert pong[0] == 0x8A and pong[1] == 0x82
    server = WebSocketProtocol()
    server.receive_data(pong)
    assert list(server.events()) == [Message.pong(b"hi")]
