"""Message variants, constructors and JSON."""

from __future__ import annotations

import dataclasses

import pytest

from ignitia_sync import CloseFrame, Message, MessageDecodeError


def test_constructors_match_the_guide():
    assert Message.text("Hello, World!") == Message.Text("Hello, World!")
    assert Message.binary(bytearray([1, 2, 3, 4])) == Message.Binary(b"\x01\x02\x03\x04")
    assert Message.ping(b"ping data") == Message.Ping(b"ping data")
    assert Message.pong("pong data") == Message.Pong(b"pong data")
    assert Message.close() == Message.Close(None)
    assert Message.close_with_reason(1000, "Normal closure") == Message.Close(CloseFrame(1000, "Normal closure"))


def test_variants_work_in_match_and_are_frozen():
    def kind(message: Message) -> str:
        match message:
            case Message.Text(text):
                return f"text {text}"
            case Message.Binary(data):
                return f"binary {len(data)}"
            case Message.Close(CloseFrame(code, reason)):
                return f"close {code} {reason}"
            case Message.Close(None):
                return "close"
            case _:
                return "control"

    assert kind(Message.text("a")) == "text a"
    assert kind(Message.binary(b"ab")) == "binary 2"
    assert kind(Message.close_with_reason(1001, "away")) == "close 1001 away"
    assert kind(Message.close()) == "close"
    assert kind(Message.ping()) == "control"
    with pytest.raises(dataclasses.FrozenInstanceError):
        Message.text("a").data = "b"  # type: ignore[misc]


@dataclasses.dataclass
class ChatMessage:
    user: str
    text: str
    timestamp: int


def test_json_makes_a_text_message_from_dicts_and_dataclasses():
    message = Message.json(ChatMessage("Alice", "Hello everyone!", 1634567890))
    assert isinstance(message, Message.Text)
    assert message.decode_json() == {"user": "Alice", "text": "Hello everyone!", "timestamp": 1634567890}
    assert Message.json([1, "é"]).data == '[1,"é"]'
    with pytest.raises(TypeError):
        Message.json(object())


def test_bad_json_raises_a_clear_error():
    with pytest.raises(MessageDecodeError, match="invalid JSON"):
        Message.text("{not json").decode_json()
    assert issubclass(MessageDecodeError, ValueError)
