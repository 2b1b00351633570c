"""sansio/frames.py: the frame encoders and masking, byte for byte (RFC 6455 section 5)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from ignitia_sync import Message
from ignitia_sync.sansio import framing, framing_python
from ignitia_sync.sansio.deflate import negotiate_deflate
from ignitia_sync.sansio.frames import encode_frame, encode_shared_frame, unmask
from ignitia_sync.sansio.framing import masked_frame as _masked_frame
from ignitia_sync.sansio.protocol import WebSocketProtocol


def test_the_rfc_6455_examples_byte_for_byte():
    """RFC 6455 section 5.7: "Hello" unmasked, "Hello" masked with 37 fa 21 3d, 256 B and 64 KiB heads."""
    assert encode_frame(Message.text("Hello")) == bytes.fromhex("810548656c6c6f")
    assert _masked_frame(1, b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("818537fa213d7f9f4d5158")
    assert encode_frame(Message.binary(b"\x00" * 256))[:4] == bytes.fromhex("827e0100")
    assert encode_frame(Message.binary(b"\x00" * 65536))[:10] == bytes.fromhex("827f0000000000010000")


@pytest.mark.parametrize(
    ("length", "head"),
    [(0, "8200"), (125, "827d"), (126, "827e007e"), (65535, "827effff"), (65536, "827f0000000000010000")],
)
def test_encode_frame_uses_the_shortest_length_at_each_boundary(length, head):
    payload = os.urandom(length)
    frame = encode_frame(Message.binary(payload))
    assert frame == bytes.fromhex(head) + payload
    assert WebSocketProtocol().send(Message.binary(payload)) == frame  # what a broadcast shares is the peer's frame
    client = WebSocketProtocol(client=True)
    client.receive_data(frame)
    assert list(client.events()) == [Message.binary(payload)]


@pytest.mark.parametrize("message", [Message.ping(b"p"), Message.pong(b"p"), Message.Close(None)])
def test_only_data_messages_are_encoded_for_a_broadcast(message):
    with pytest.raises(TypeError):
        encode_frame(message)
    with pytest.raises(TypeError):
        encode_shared_frame(message, (15, 8))


@pytest.mark.parametrize(
    "offer",
    ["permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"],
)
def test_a_shared_frame_is_the_frame_each_such_peer_would_send(offer):
    extension, _ = negotiate_deflate([offer], 1 << 20)
    server = WebSocketProtocol(deflate=extension)
    key = server.framing_key
    assert key is not None
    messages = [Message.text("hello " * 50), Message.binary(os.urandom(300)), Message.text(""), Message.text("x" * 70000)]
    for message in messages * 2:  # the second round: no context was kept between messages
        assert encode_shared_frame(message, key) == server.send(message)


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 7, 8, 9, 125, 126, 4097, 70001])
def test_every_unmask_routine_gives_the_same_bytes(size):
    data, mask = os.urandom(size), os.urandom(4)
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert framing_python.unmask_python(data, mask) == expected
    assert framing_python.unmask(bytearray(data), bytearray(mask)) == expected  # websockets' when installed
    assert framing.unmask(memoryview(data), mask) == expected  # the C accelerator's when built
    assert unmask(bytearray(data), bytearray(mask)) == expected
    assert unmask(unmask(data, mask), mask) == data  # masking and unmasking are one operation


def fresh(module, monkeypatch: pytest.MonkeyPatch, pure: bool):
    """``module`` executed again, as a separate module, with or without IGNITIA_SYNC_PURE_PYTHON."""
    if pure:
        monkeypatch.setenv("IGNITIA_SYNC_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("IGNITIA_SYNC_PURE_PYTHON", raising=False)
    spec = importlib.util.spec_from_file_location(module.__name__ + "_again", module.__file__)
    assert spec is not None and spec.loader is not None
    again = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(again)
    return again


def test_ignitia_sync_pure_python_forces_every_python_routine(monkeypatch):
    chooser = fresh(framing, monkeypatch, pure=True)
    assert chooser.ACTIVE is False
    assert chooser.parse is framing_python.parse and chooser.text_frame is framing_python.text_frame
    python = fresh(framing_python, monkeypatch, pure=True)
    assert python.unmask is python.unmask_python  # not websockets' routine either


def test_websockets_routine_unmasks_the_python_path_when_installed(monkeypatch):
    speedups = pytest.importorskip("websockets.speedups")
    python = fresh(framing_python, monkeypatch, pure=False)
    assert python.unmask is speedups.apply_mask
    assert python.unmask(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")
