"""What a host can say about each of its open connections: :class:`ConnectionInfo` records.

``host.inspect_connections()`` returns one record per open connection, made from a snapshot
taken like ``stats()``'s: the registry's membership under its lock, each connection's own
counters read as they are at that moment (a connection in another thread may move on meanwhile;
no record is ever half of two connections).

Example:
    >>> info = ConnectionInfo("#3", "/chat/:room", "203.0.113.7", 12.5, frozenset({"lobby"}), "alice",
    ...                       "open", 0, 4, 9)
    >>> info.user_id, info.as_json()["rooms"]
    ('alice', ['lobby'])
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["ConnectionInfo", "describe"]


class _Described(Protocol):
    """What a record is made of (a :class:`~ignitia_sync.connection.WebSocketConnection`)."""

    id: str
    opened_at: float

    @property
    def user_id(self) -> str | None: ...
    @property
    def state(self) -> str: ...
    @property
    def outbox_bytes(self) -> int: ...
    @property
    def messages_in(self) -> int: ...
    @property
    def messages_out(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One open connection, as ``host.inspect_connections()`` saw it.

    Attributes:
        id: the connection's own id for its whole life ("#17", unique in its process),
            also once ``identify`` gave it an application id.
        route: the route pattern that accepted it (``"/chat/:room"``).
        peer: the client's IP address (from ``Forwarded``/``X-Forwarded-For`` only when
            sent by a trusted proxy).
        age: seconds since the connection opened.
        rooms: the rooms it is in.
        user_id: the user the connection belongs to (``registry.set_user``, or the ``AuthInfo``
            that ``AuthMiddleware`` attached); without one, the application id given with
            ``registry.identify`` (what this field was before connections had users, so a
            program that only identifies sees the same); None without either.
        state: ``"open"``, ``"closing"``, ``"draining"`` or ``"closed"``.
        outbox_bytes: bytes queued without blocking (broadcasts) and not yet written.
        messages_in, messages_out: messages received (control frames included) and sent.
        application_id: the id given with ``registry.identify`` (``send_to``); None without one.

    Example:
        >>> ConnectionInfo("#1", "/echo", "127.0.0.1", 0.5, frozenset(), None, "open", 0, 1, 1).route
        '/echo'
    """

    id: str
    route: str
    peer: str
    age: float
    rooms: frozenset[str]
    user_id: str | None
    state: str
    outbox_bytes: int
    messages_in: int
    messages_out: int
    application_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The record as JSON-ready values (rooms sorted, age rounded to milliseconds).

        Example:
            >>> ConnectionInfo("#1", "/echo", "127.0.0.1", 0.12345, frozenset({"b", "a"}), None, "open", 0, 1, 1
            ...                ).as_json()["rooms"]
            ['a', 'b']
        """
        return {
            "id": self.id,
            "route": self.route,
            "peer": self.peer,
            "age": round(self.age, 3),
            "rooms": sorted(self.rooms),
            "user_id": self.user_id,
            "state": self.state,
            "outbox_bytes": self.outbox_bytes,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "application_id": self.application_id,
        }


def describe(
    rooms_of: Mapping[Any, frozenset[str]], opened: Mapping[Any, tuple[str, str, str]]
) -> list[ConnectionInfo]:
    """Records of the connections in ``rooms_of`` (a registry snapshot), oldest first.

    ``opened`` holds what the host noted when each connection opened: its own id, route
    pattern and client IP. A connection the host did not note (none in practice) is left out.

    Example:
        >>> describe({}, {})
        []
    """
    now = time.monotonic()
    records = []
    for ws, rooms in rooms_of.items():
        noted = opened.get(ws)
        if noted is None:
            continue
        conn: _Described = ws
        own_id, route, peer = noted
        application_id = None if conn.id.startswith("#") else conn.id
        user_id = conn.user_id
        records.append(
            ConnectionInfo(
                id=own_id,
                route=route,
                peer=peer,
                age=max(0.0, now - conn.opened_at),
                rooms=rooms,
                user_id=user_id if user_id is not None else application_id,
                state=conn.state,
                outbox_bytes=conn.outbox_bytes,
                messages_in=conn.messages_in,
                messages_out=conn.messages_out,
                application_id=application_id,
            )
        )
    records.sort(key=lambda record: -record.age)
    return records
