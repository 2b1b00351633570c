"""``Subscriber``: a plain redis-py subscriber straight to Redis, polled without blocking the hub."""

from __future__ import annotations

from typing import Any

from ignitia_sync import Message
from ignitia_sync.redis import decode


class Subscriber:
    """A plain redis-py subscriber (not through a proxy), polled without blocking the hub."""

    def __init__(self, server: Any, *channels: str) -> None:
        self.pubsub = server.client().pubsub()
        self.pubsub.subscribe(*channels)
        self.heard: list[tuple[bytes, bytes, str | None, Message]] = []

    def _next(self) -> Any:
        """The next message already here, or None; a large one half arrived counts as not yet here."""
        try:
            return self.pubsub.get_message(timeout=0.01)
        except BlockingIOError:  # redis-py read part of a 1 MiB message without blocking: next poll
            return None

    def poll(self) -> list[tuple[bytes, bytes, str | None, Message]]:
        """Every envelope heard so far (kind, uid, target, message), after reading what has arrived."""
        while (message := self._next()) is not None:
            if message["type"] == "message" and message["data"] != b"W":
                self.heard.append(decode(message["data"]))
        return self.heard

    def messages(self) -> list[Message]:
        """The messages of every envelope heard so far, after reading what has arrived."""
        return [envelope[3] for envelope in self.poll()]
