"""WebSocket messages: the variants of :class:`Message`, :class:`CloseFrame` and JSON helpers.

Every message is a small frozen dataclass, so handlers can ``match`` on it::

    match ws.recv():
        case Message.Text(text):
            ws.send_text(f"Echo: {text}")
        case Message.Binary(data):
            ws.send_bytes(data)
        case Message.Close(frame):
            print("peer closed", frame)
        case None:
            print("connection gone")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import simplejson

from .exceptions import MessageDecodeError

__all__ = ["Binary", "Close", "CloseFrame", "Message", "Ping", "Pong", "Text"]

Payload = bytes | bytearray | memoryview


def not_a_message(value: object) -> TypeError:
    """The error for sending ``value``, which is not a message: one line saying what to send instead.

    Only the type is named, never the value (it may be a payload, and errors end up in logs).

    Example:
        >>> str(not_a_message({"text": "hi"}))
        'not a Message: dict; to send it as JSON use ws.send_json(...)'
        >>> str(not_a_message(42))
        'not a Message: int; send a str (text), bytes (binary) or a Message'
    """
    name = type(value).__name__
    if isinstance(value, (dict, list, tuple)):
        return TypeError(f"not a Message: {name}; to send it as JSON use ws.send_json(...)")
    if isinstance(value, str):
        return TypeError(f"not a Message: {name} (a str subclass); send str(value) as text")
    return TypeError(f"not a Message: {name}; send a str (text), bytes (binary) or a Message")


def not_broadcastable(value: object, verb: str = "broadcast") -> TypeError:
    """The error for broadcasting ``value``: rooms carry Text and Binary messages, built by the caller.

    Only the type is named, never the value. ``verb`` is ``"broadcast"`` or ``"sent"``.

    Example:
        >>> str(not_broadcastable({"text": "hi"}))
        'only Text and Binary messages are broadcast, not dict; use Message.json(value)'
        >>> str(not_broadcastable("hi", "sent"))
        'only Text and Binary messages are sent, not str; use Message.text(value)'
    """
    name = type(value).__name__
    if isinstance(value, (dict, list, tuple)):
        hint = "; use Message.json(value)"
    elif isinstance(value, str):
        hint = "; use Message.text(value)"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        hint = "; use Message.binary(value)"
    else:
        hint = ""
    return TypeError(f"only Text and Binary messages are {verb}, not {name}{hint}")


def _json_default(value: Any) -> Any:
    """Let ``Message.json`` encode dataclasses, the Python twin of a serde struct."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class Message:
    """Base of the five message kinds, with the guide's constructors.

    The variants are reachable as ``Message.Text``, ``Message.Binary``,
    ``Message.Ping``, ``Message.Pong`` and ``Message.Close``.

    Example:
        >>> Message.text("hi")
        Text(data='hi')
        >>> Message.json({"n": 1}).data
        '{"n":1}'
        >>> Message.close_with_reason(1000, "Normal closure").frame.code
        1000
    """

    __slots__ = ()

    Text: ClassVar[type[Text]]
    Binary: ClassVar[type[Binary]]
    Ping: ClassVar[type[Ping]]
    Pong: ClassVar[type[Pong]]
    Close: ClassVar[type[Close]]

    @staticmethod
    def text(data: str) -> _Text:
        """A text message. Example: ``Message.text("Hello, World!")``."""
        return Text(data)

    @staticmethod
    def binary(data: Payload) -> _Binary:
        """A binary message. Example: ``Message.binary(b"\\x01\\x02")``."""
        return Binary(bytes(data))

    @staticmethod
    def ping(data: Payload | str = b"") -> _Ping:
        """A ping (at most 125 bytes). Example: ``Message.ping(b"ping data")``."""
        return Ping(data.encode() if isinstance(data, str) else bytes(data))

    @staticmethod
    def pong(data: Payload | str = b"") -> _Pong:
        """A pong (at most 125 bytes). Example: ``Message.pong(b"pong data")``."""
        return Pong(data.encode() if isinstance(data, str) else bytes(data))

    @staticmethod
    def close() -> _Close:
        """A close message without a status code. Example: ``ws.send(Message.close())``."""
        return Close(None)

    @staticmethod
    def close_with_reason(code: int, reason: str = "") -> _Close:
        """A close message with code and reason: ``Message.close_with_reason(1000, "bye")``."""
        return Close(CloseFrame(code, reason))

    @staticmethod
    def json(value: Any) -> _Text:
        """A **text** message holding ``value`` encoded as compact JSON (simplejson).

        Dataclass instances are encoded as objects.

        Example:
            >>> Message.json({"user": "Alice", "text": "hi"}).data
            '{"user":"Alice","text":"hi"}'
        """
        return Text(simplejson.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default))


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """The code and reason carried by a Close message.

    Example:
        >>> CloseFrame(1001, "Server shutdown").reason
        'Server shutdown'
    """

    code: int
    reason: str = ""


#: The close codes an application sends to end a session it revokes (``Registry.disconnect``).
_REVOCATION_CODES = frozenset({1000, 1001, 1008})


def check_revocation_close(code: int, reason: str) -> None:
    """Refuse what an application may not close a revoked session with.

    The code must be 1000, 1001, 1008 (policy violation) or an application code (3000-4999);
    the reason at most 123 bytes of UTF-8 (what fits in a Close frame).

    Raises:
        ValueError: another code (1011 is the server's own failure, 1006 is never sent), or
            a reason that is too long or not encodable.

    Example:
        >>> check_revocation_close(4001, "logged out")
        >>> check_revocation_close(1011, "")
        Traceback (most recent call last):
        ...
        ValueError: close code 1011 cannot end a revoked session: use 1000, 1001, 1008 or 3000-4999
    """
    if type(code) is not int or (code not in _REVOCATION_CODES and not 3000 <= code <= 4999):
        raise ValueError(f"close code {code!r} cannot end a revoked session: use 1000, 1001, 1008 or 3000-4999")
    if not isinstance(reason, str):
        raise ValueError(f"a close reason is a str, not {type(reason).__name__}")
    try:
        size = len(reason.encode())
    except UnicodeEncodeError:
        raise ValueError("a close reason must be valid Unicode text (UTF-8 cannot encode it)") from None
    if size > 123:
        raise ValueError(f"a close reason is at most 123 bytes of UTF-8, not {size}")


@dataclass(frozen=True, slots=True)
class Text(Message):
    """A text message (``str``). Example: ``Message.Text("hello")``."""

    data: str

    def decode_json(self) -> Any:
        """Parse the text as JSON.

        Raises:
            MessageDecodeError: the text is not valid JSON; the message says where.

        Example:
            >>> Message.text('{"x": 3}').decode_json()["x"]
            3
        """
        try:
            return simplejson.loads(self.data)
        except simplejson.JSONDecodeError as exc:
            raise MessageDecodeError(f"invalid JSON: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Binary(Message):
    """A binary message (``bytes``). Example: ``Message.Binary(b"data")``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """A ping the peer sent (already answered automatically) or one to send."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong(Message):
    """A pong: the answer to a ping, or an unsolicited heartbeat."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Close(Message):
    """A close message; ``frame`` is None when the peer sent no status code."""

    frame: CloseFrame | None = None


Message.Text = Text
Message.Binary = Binary
Message.Ping = Ping
Message.Pong = Pong
Message.Close = Close

# Unshadowed names for the constructors' return types (inside Message, "Text" is the ClassVar).
_Text = Text
_Binary = Binary
_Ping = Ping
_Pong = Pong
_Close = Close
