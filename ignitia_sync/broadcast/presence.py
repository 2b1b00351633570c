"""Who is in a room: one entry per user, counting that user's connections (pure, no I/O).

:class:`PresenceBook` is one process's count of the connections of each user in each room:
two tabs of one user are one entry, with a count of 2. Its changes say when a user arrives
in a room in this process (0 to 1) or leaves it (1 to 0); with a backplane that shares
presence (Redis), each process writes its counts there and the room's presence, and its join
and leave events, are those of every process together.

Example:
    >>> book = PresenceBook()
    >>> book.add("lobby", "alice"), book.add("lobby", "alice"), book.add("lobby", "bob")
    (1, 2, 1)
    >>> book.users("lobby")
    {'alice': 2, 'bob': 1}
    >>> book.remove("lobby", "alice"), book.remove("lobby", "alice")
    (1, 0)
    >>> book.users("lobby")
    {'bob': 1}
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["PresenceBook"]


class PresenceBook:
    """Per room, per user: how many of this process's connections are there.

    Not thread-safe: its owner (the registry) calls it under its lock.
    """

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, int]] = {}

    def add(self, room: str, user: str) -> int:
        """One more connection of ``user`` in ``room``; its count here now (1: the user arrived)."""
        users = self._rooms.setdefault(room, {})
        count = users[user] = users.get(user, 0) + 1
        return count

    def remove(self, room: str, user: str) -> int:
        """One connection of ``user`` less in ``room``; its count here now (0: the user left).

        Example:
            >>> PresenceBook().remove("lobby", "nobody")  # never added: nothing changes
            0
        """
        users = self._rooms.get(room)
        if users is None or user not in users:
            return 0
        count = users[user] - 1
        if count:
            users[user] = count
        else:
            del users[user]
            if not users:
                del self._rooms[room]
        return count

    def users(self, room: str) -> dict[str, int]:
        """The users in ``room`` here and their connection counts (a copy)."""
        return dict(self._rooms.get(room, {}))

    def count(self, room: str, user: str) -> int:
        """How many connections ``user`` has in ``room`` here."""
        return self._rooms.get(room, {}).get(user, 0)

    def entries(self) -> Iterator[tuple[str, str, int]]:
        """Every (room, user, count) here: what a process writes again to keep its entries alive.

        Example:
            >>> book = PresenceBook()
            >>> _ = book.add("lobby", "alice")
            >>> list(book.entries())
            [('lobby', 'alice', 1)]
        """
        for room, users in list(self._rooms.items()):
            for user, count in list(users.items()):
                yield room, user, count
