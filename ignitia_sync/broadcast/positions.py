"""Positions of a room's messages, its bounded history, and what a member recovers on joining.

Every message broadcast to a room gets a :class:`Position` ``(epoch, offset)``: the offset
counts the room's messages (1, 2, 3...), the epoch names the log they were counted in. A new
epoch starts whenever the log may have lost what it held (its process or Redis restarted
without it, it was forgotten after ``meta_ttl`` idle seconds): a position from an older epoch
is then *detectably* stale, never silently wrong.

:class:`RoomLogs` keeps the logs of one process (the in-process history, with no backplane):
for each room its epoch, its last offset, and its last messages, bounded in count and age
(:class:`History`). :meth:`RoomLogs.since` answers what a member that last saw a position has
missed: the messages after it, or a :class:`Recovery` saying why they cannot be given.

Example:
    >>> logs = RoomLogs(History(max_messages=2), epoch=lambda: "e1")
    >>> [logs.append("lobby", text, now=0.0) for text in ("a", "b", "c")]
    [Position(epoch='e1', offset=1), Position(epoch='e1', offset=2), Position(epoch='e1', offset=3)]
    >>> recovery, missed = logs.since("lobby", Position("e1", 0), now=1.0)  # "a" is trimmed
    >>> recovery.complete, recovery.reason, missed
    (False, 'too old', [])
    >>> recovery, missed = logs.since("lobby", Position("e1", 2), now=1.0)
    >>> recovery.complete, [(position.offset, message) for position, message in missed]
    (True, [(3, 'c')])
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

__all__ = ["DEFAULT_HISTORY", "History", "HistoryChoice", "Position", "Recovery", "RoomLogs", "RoomPositions", "new_epoch"]

T = TypeVar("T")

#: Why a recovery is not complete (``Recovery.reason``).
TOO_OLD = "too old"  # the log no longer holds everything after the position (trimmed by count or age)
EPOCH_CHANGED = "epoch changed"  # the position is from a log that is gone (restart, forgotten, failover)
NO_HISTORY = "no history"  # the room keeps no history (History(max_messages=0))
UNAVAILABLE = "unavailable"  # the log could not be read (its Redis is unreachable)

#: The longest epoch taken from a peer (ours are 8 hex characters).
MAX_EPOCH_LENGTH = 32


def new_epoch() -> str:
    """A fresh epoch: 8 random hex characters (a collision with the one before is 1 in 4 billion).

    Example:
        >>> len(new_epoch()), new_epoch() != new_epoch()
        (8, True)
    """
    return os.urandom(4).hex()


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message stands in its room's log: ``(epoch, offset)``, offsets from 1.

    Example:
        >>> Position("9f2c01ab", 17).as_json()
        {'epoch': '9f2c01ab', 'offset': 17}
        >>> Position.from_json({"epoch": "9f2c01ab", "offset": 17})
        Position(epoch='9f2c01ab', offset=17)
    """

    epoch: str
    offset: int

    def as_json(self) -> dict[str, Any]:
        """The position as JSON-ready values (the wire format's ``epoch`` and ``offset``)."""
        return {"epoch": self.epoch, "offset": self.offset}

    @classmethod
    def from_json(cls, value: Any) -> Position:
        """A position from a peer's JSON (``{"epoch": str, "offset": int}``), checked.

        Raises:
            ValueError: not an object with a short ``epoch`` string and an ``offset`` from 0
                up (0: nothing seen yet in that epoch).

        Example:
            >>> Position.from_json({"epoch": "e", "offset": -1})
            Traceback (most recent call last):
            ...
            ValueError: a position is {"epoch": str (1-32 characters), "offset": int >= 0}
        """
        if isinstance(value, dict):
            epoch, offset = value.get("epoch"), value.get("offset")
            if (isinstance(epoch, str) and 0 < len(epoch) <= MAX_EPOCH_LENGTH
                    and type(offset) is int and 0 <= offset < 1 << 63):
                return cls(epoch, offset)
        raise ValueError(f'a position is {{"epoch": str (1-{MAX_EPOCH_LENGTH} characters), "offset": int >= 0}}')


@dataclass(frozen=True, slots=True)
class Recovery:
    """What joining a room from a position gave: all that was missed, or why not.

    Attributes:
        complete: True when every message after the position was (or will be) delivered,
            with none twice; False when there is a gap the member must fill otherwise
            (reload its state), then go on from ``position``.
        reason: None when complete; else ``"too old"`` (the log was trimmed past the
            position), ``"epoch changed"`` (the position is from a log that is gone) or
            ``"no history"`` (the room keeps none) or ``"unavailable"`` (its log, in Redis,
            could not be read).
        position: the room's position when the member joined (its last message's; offset 0
            in a room with no message yet); live messages follow it. None for a room without
            positions (``Registry(history=None)``, or None for that room).
        replayed: how many messages from the log were delivered before the live ones.

    Example:
        >>> Recovery(False, "epoch changed", Position("e2", 4), 0).complete
        False
    """

    complete: bool
    reason: str | None
    position: Position | None
    replayed: int = 0

    def as_json(self) -> dict[str, Any]:
        """The recovery as JSON-ready values (the wire format's ``joined`` answer).

        Example:
            >>> Recovery(True, None, Position("e1", 3), 2).as_json()
            {'complete': True, 'reason': None, 'position': {'epoch': 'e1', 'offset': 3}, 'replayed': 2}
        """
        position = None if self.position is None else self.position.as_json()
        return {"complete": self.complete, "reason": self.reason, "position": position, "replayed": self.replayed}


@dataclass(frozen=True, slots=True)
class History:
    """How much of each room's log is kept, for members that come back: ``History(max_messages=500)``.

    Args:
        max_messages: the most messages kept per room (0: no history; joins from a
            position then recover nothing, ``"no history"``).
        max_bytes: the most payload kept per room (the length of each message's data: bytes,
            or characters of a text); the oldest messages go first.
        max_total_bytes: the most payload kept for all rooms of one process together (its
            in-process history); past it, the room written to longest ago loses its oldest
            messages first.
        max_age: seconds a message is kept (older ones are trimmed: a position before them
            is ``"too old"``).
        meta_ttl: seconds a room's epoch and last offset are kept after its last message.
            A member coming back within it recovers (or learns exactly what it missed);
            after it the room starts a new epoch. At least ``max_age``.

    Raises:
        ValueError: a negative count or size, a non-positive age, or ``meta_ttl < max_age``.

    Example:
        >>> History().max_messages, History().max_bytes, History().max_age, History().meta_ttl
        (200, 1048576, 300.0, 3600.0)
    """

    max_messages: int = 200
    max_bytes: int = 1 << 20
    max_total_bytes: int = 64 << 20
    max_age: float = 300.0
    meta_ttl: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("max_messages", "max_bytes", "max_total_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be an int >= 0, not {value!r}")
        if not self.max_age > 0:
            raise ValueError(f"max_age must be positive seconds, not {self.max_age!r}")
        if not self.meta_ttl >= self.max_age:
            raise ValueError(f"meta_ttl ({self.meta_ttl!r} s) must be at least max_age ({self.max_age!r} s)")

    @property
    def enabled(self) -> bool:
        """True when messages are kept at all."""
        return self.max_messages > 0 and self.max_bytes > 0


class _Log(Generic[T]):
    """One room's log: its epoch, last offset, last write, and last messages (oldest first)."""

    __slots__ = ("entries", "epoch", "offset", "size", "written")

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.offset = 0
        self.written = 0.0
        self.size = 0  # of the entries kept
        self.entries: collections.deque[tuple[int, float, T, int]] = collections.deque()


class RoomLogs(Generic[T]):
    """The logs of every room of one process: positions and bounded history, no I/O.

    Not thread-safe: its owner (the registry) calls it under its lock. ``now`` arguments are
    ``time.monotonic()`` values (given in tests).

    Args:
        history: the bounds; ``History(max_messages=0)`` keeps positions only.
        epoch: makes a new epoch (random by default).

    Example:
        >>> logs = RoomLogs(History(), epoch=lambda: "e1")
        >>> logs.append("lobby", "hi", now=0.0), logs.position("lobby", now=1.0)
        (Position(epoch='e1', offset=1), Position(epoch='e1', offset=1))
    """

    def __init__(self, history: History | None = None, *, epoch: Callable[[], str] = new_epoch) -> None:
        self.history = history if history is not None else History()
        self._new_epoch = epoch
        # Rooms by last write, oldest first: forgetting idle ones costs O(1) per append.
        self._logs: collections.OrderedDict[str, _Log[T]] = collections.OrderedDict()
        self._size = 0  # of every room's entries

    @property
    def size(self) -> int:
        """The payload kept for every room together (what ``max_total_bytes`` bounds)."""
        return self._size

    def __len__(self) -> int:
        return len(self._logs)

    def append(self, room: str, message: T, *, size: int = 0, now: float | None = None) -> Position:
        """Give ``message`` the room's next position and keep it (within the bounds); ``size``: its length."""
        now = time.monotonic() if now is None else now
        self._forget_idle(now)
        log = self._logs.get(room)
        if log is None:
            log = self._logs[room] = _Log(self._new_epoch())
        else:
            self._logs.move_to_end(room)
        log.offset += 1
        log.written = now
        history = self.history
        if history.enabled:
            entries = log.entries
            entries.append((log.offset, now, message, size))
            log.size += size
            self._size += size
            while len(entries) > history.max_messages or log.size > history.max_bytes:
                self._drop_oldest(log)
            if self._size > history.max_total_bytes:
                self._trim_to_total()
        return Position(log.epoch, log.offset)

    def _drop_oldest(self, log: _Log[T]) -> None:
        size = log.entries.popleft()[3]
        log.size -= size
        self._size -= size

    def _trim_to_total(self) -> None:
        """Drop the oldest messages of the rooms written to longest ago until all fit in ``max_total_bytes``."""
        limit = self.history.max_total_bytes
        for log in self._logs.values():
            while log.entries and self._size > limit:
                self._drop_oldest(log)
            if self._size <= limit:
                return

    def position(self, room: str, *, now: float | None = None) -> Position:
        """The room's current position (its last message's); a room with none starts its epoch.

        Example:
            >>> RoomLogs(epoch=lambda: "e9").position("new room")
            Position(epoch='e9', offset=0)
        """
        now = time.monotonic() if now is None else now
        self._forget_idle(now)
        log = self._logs.get(room)
        if log is None:  # the epoch starts now: a member's position must stay valid after this
            log = self._logs[room] = _Log(self._new_epoch())
            log.written = now
        return Position(log.epoch, log.offset)

    def since(self, room: str, position: Position | None, *, now: float | None = None,
              limit: int | None = None) -> tuple[Recovery, list[tuple[Position, T]]]:
        """What a member that last saw ``position`` missed: (how complete, the messages after it).

        ``position`` None: nothing to recover (complete, no message). ``limit``: at most this
        many messages; a longer gap is ``"too old"`` (the member reloads instead of replaying).
        """
        now = time.monotonic() if now is None else now
        current = self.position(room, now=now)
        if position is None:
            return Recovery(True, None, current), []
        if position.epoch != current.epoch or position.offset > current.offset:
            return Recovery(False, EPOCH_CHANGED, current), []
        if position.offset == current.offset:
            return Recovery(True, None, current), []  # nothing missed
        if not self.history.enabled:
            return Recovery(False, NO_HISTORY, current), []
        entries = self._live_entries(self._logs[room], now)
        oldest = entries[0][0] if entries else current.offset + 1
        missed = current.offset - position.offset
        if oldest > position.offset + 1 or (limit is not None and missed > limit):
            return Recovery(False, TOO_OLD, current), []
        found = [(Position(current.epoch, offset), message) for offset, _, message, _ in entries
                 if offset > position.offset]
        return Recovery(True, None, current, len(found)), found

    def recent(self, room: str, *, limit: int, now: float | None = None) -> list[tuple[Position, T]]:
        """The room's last ``limit`` messages still kept, oldest first.

        Example:
            >>> logs = RoomLogs(epoch=lambda: "e1")
            >>> _ = [logs.append("r", n, now=0.0) for n in range(5)]
            >>> [(p.offset, m) for p, m in logs.recent("r", limit=2, now=0.0)]
            [(4, 3), (5, 4)]
        """
        now = time.monotonic() if now is None else now
        self._forget_idle(now)
        log = self._logs.get(room)
        if log is None or limit <= 0:
            return []
        entries = self._live_entries(log, now)[-limit:]
        return [(Position(log.epoch, offset), message) for offset, _, message, _ in entries]

    def _live_entries(self, log: _Log[T], now: float) -> list[tuple[int, float, T, int]]:
        """The log's entries younger than ``max_age`` (older ones are dropped for good)."""
        entries = log.entries
        oldest_kept = now - self.history.max_age
        while entries and entries[0][1] < oldest_kept:
            self._drop_oldest(log)
        return list(entries)

    def _forget_idle(self, now: float) -> None:
        """Forget rooms with no message for ``meta_ttl``: their next message starts a new epoch."""
        logs = self._logs
        idle_before = now - self.history.meta_ttl
        while logs:
            room, log = next(iter(logs.items()))
            if log.written >= idle_before:
                break
            self._size -= log.size
            del logs[room]


#: What keeps positions and history: one :class:`History` for every room, None for none (at
#: most once, no positions: the fastest), or a function of the room's name choosing either.
HistoryChoice: TypeAlias = "History | Callable[[str], History | None] | None"
#: The history every room keeps unless told otherwise.
DEFAULT_HISTORY = History()


class RoomPositions:
    """Which rooms keep positions (and how much history), and their logs in this process.

    Example:
        >>> positions = RoomPositions(lambda room: None if room.startswith("typing:") else History())
        >>> positions.log_for("typing:lobby") is None, positions.log_for("lobby") is not None
        (True, True)
    """

    def __init__(self, choice: HistoryChoice = DEFAULT_HISTORY) -> None:
        if choice is not None and not isinstance(choice, History) and not callable(choice):
            raise TypeError(f"history must be a History, None or a function of the room name, not {choice!r}")
        self._choice = choice
        self._logs: dict[History, RoomLogs[Any]] = {}

    def history_for(self, room: str) -> History | None:
        """The history ``room`` keeps; None: no positions at all.

        Raises:
            TypeError: the function given returned something else than a History or None.
        """
        choice = self._choice
        if choice is None or isinstance(choice, History):
            return choice
        history = choice(room)
        if history is not None and not isinstance(history, History):
            raise TypeError(f"history({room!r}) returned {history!r}: expected a History or None")
        return history

    def log_for(self, room: str) -> RoomLogs[Any] | None:
        """The log that gives ``room``'s positions here; None when it keeps none."""
        history = self.history_for(room)
        if history is None:
            return None
        logs = self._logs.get(history)
        if logs is None:
            logs = self._logs[history] = RoomLogs(history)
        return logs
