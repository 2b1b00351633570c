"""Room messages put back in position order before delivery, and gaps found (pure, no I/O).

With a backplane that gives positions (Redis), a process hears a room's messages from more
than one path: the answer to its own publish, the subscription, a read of the room's log to
fill a gap or to catch up after a reconnect. :class:`Sequencer` takes them in any order, any
number of times, and hands back each position once, in order: a duplicate is dropped, an
early one waits for the ones before it (bounded), and what is missing is reported so that
the registry can read it from the log or, if the log lost it, announce the gap. A message
from another epoch starts that epoch from its offset 1: what the old one still had is gone.

Example:
    >>> sequencer = Sequencer()
    >>> sequencer.start("lobby", Position("e1", 4))  # a member read the log up to 4: nothing held
    []
    >>> sequencer.offer("lobby", Position("e1", 6), "six").ready  # 5 is missing: it waits
    []
    >>> sequencer.missing("lobby")
    (5, 5)
    >>> [p.offset for p, _ in sequencer.offer("lobby", Position("e1", 5), "five").ready]
    [5, 6]
    >>> sequencer.offer("lobby", Position("e1", 5), "five again").ready  # once only
    []
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .positions import Position

__all__ = ["NEW_EPOCH", "Offered", "Sequencer"]

#: Messages of one room that may wait for the ones before them.
MAX_WAITING = 4096


@dataclass(slots=True)
class Offered:
    """What one offer gave: messages to deliver now, in order, and an epoch change before them.

    Attributes:
        ready: (position, item) to deliver, in position order.
        new_epoch: the room's log changed epoch: members must hear of the gap before
            ``ready`` (the new epoch's start, offset 0: its messages are ordered from 1).
    """

    ready: list[tuple[Position, Any]] = field(default_factory=list)
    new_epoch: Position | None = None


#: A room's epoch before its start is known (:meth:`Sequencer.hold`), and a room known to be new
#: (its log had no epoch): the first message heard gives the epoch, from its offset 1.
_HELD, _NEW = None, ""


#: Epochs a room left that are remembered: a late message of one of them is dropped.
_LEFT_EPOCHS = 8


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: In what :meth:`Sequencer.start` and :meth:`Sequencer.start_unknown` give back, ``(position,
#: NEW_EPOCH)``: the room's log changed epoch there (``position`` is the new epoch's start, offset
#: 0): its members must hear of the gap before what follows.
NEW_EPOCH: Any = _Marker("NEW_EPOCH")
#: A new epoch's notice heard while a room's start is not known (kept with what is held).
_NOTICE: Any = _Marker("_NOTICE")


class _Room:
    __slots__ = ("epoch", "held", "last", "left", "waiting")

    def __init__(self, epoch: str | None, last: int, left: tuple[str, ...] = ()) -> None:
        self.epoch = epoch
        self.last = last  # the offset delivered last
        self.waiting: dict[int, Any] = {}  # offset -> item, all > last + 1
        self.held: list[tuple[Position, Any]] = []  # while the start is not known
        self.left = left  # the epochs it left, the last one last: never gone back to

    def leave_for(self, epoch: str, last: int, older: tuple[str, ...] = ()) -> _Room:
        """This room in ``epoch`` from ``last`` on, remembering the epoch it leaves (and ``older`` ones).

        ``epoch`` itself is never among those left: a room is never in an epoch it ignores.
        """
        left = (*self.left, *((self.epoch,) if self.epoch else ()), *older)
        return _Room(epoch, last, tuple(e for e in left if e != epoch)[-_LEFT_EPOCHS:])


class Sequencer:
    """Per room: the last position delivered, and what arrived early.

    Not thread-safe: its owner (the registry) calls it under its order lock.

    Example:
        >>> Sequencer().last("lobby") is None
        True
    """

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self._rooms: dict[str, _Room] = {}
        self.max_waiting = max_waiting

    def last(self, room: str) -> Position | None:
        """The last position delivered in ``room`` (None: nothing known yet, or its start not yet)."""
        state = self._rooms.get(room)
        return None if state is None or not state.epoch else Position(state.epoch, state.last)

    def hold(self, room: str) -> None:
        """A first member is joining: keep what is heard until :meth:`start` says where the room starts."""
        if room not in self._rooms:
            self._rooms[room] = _Room(_HELD, 0)

    def start(self, room: str, position: Position | None) -> list[tuple[Position, Any]]:
        """Deliver from after ``position`` on (a joining member read the log up to it); what was held comes back.

        ``position`` None: the room's log had no epoch (a new room): its first epoch from offset 1.
        An epoch change among what was held comes back as ``(start of the new epoch, NEW_EPOCH)``
        before that epoch's messages; what was held of another epoch before the first message of
        ``position``'s epoch after ``position`` is older than the log's read: dropped, and its
        epochs count as left (a late one of them is ignored). The log's epoch is the room's from
        here on, even one it had left.
        """
        state = self._rooms.get(room)
        held = state.held if state is not None and state.epoch is _HELD else []
        older: tuple[str, ...] = ()  # epochs of what was held before the log's: late ones are ignored
        if position is not None:
            # Cut at the first held item of the log's epoch *after* the read: it was published after
            # what the log holds, so what was held before it is older (other epochs: dropped, and
            # counted as left). Nothing of the log's epoch after the read: no cut (what was held
            # may be newer than the read: an epoch started since, heard before a late answer).
            first = next((index for index, (early, _) in enumerate(held)
                          if early.epoch == position.epoch and early.offset > position.offset), None)
            if first is not None:
                older = tuple(dict.fromkeys(early.epoch for early, _ in held[:first] if early.epoch != position.epoch))
                held = held[first:]
        if state is None or state.epoch is _HELD or (position is not None and state.epoch != position.epoch):
            if position is None:
                state = self._rooms[room] = _Room(_NEW, 0)
            elif state is None:
                state = self._rooms[room] = _Room(position.epoch, position.offset)
            else:
                state = self._rooms[room] = state.leave_for(position.epoch, position.offset, older)
        elif position is not None and position.offset > state.last:
            state.last = position.offset
            for offset in [offset for offset in state.waiting if offset <= position.offset]:
                del state.waiting[offset]
        return self._replay(room, held)

    def _replay(self, room: str, held: list[tuple[Position, Any]]) -> list[tuple[Position, Any]]:
        """What was held, offered again in the order heard; epoch changes marked with NEW_EPOCH."""
        ready: list[tuple[Position, Any]] = []
        for early, item in held:
            offered = self.notice(room, early) if item is _NOTICE else self.offer(room, early, item)
            if offered.new_epoch is not None:
                ready.append((offered.new_epoch, NEW_EPOCH))
            ready += offered.ready
        return ready

    def notice(self, room: str, position: Position) -> Offered:
        """A new epoch's notice (the room's log started again at ``position``, offset 0).

        While the room's start is not known it is held with the messages (:meth:`start` gives
        it back); the epoch the room is in, or one it left, changes nothing; else the room goes
        on in that epoch from offset 1, and ``new_epoch`` says so (not for a room that had no
        epoch yet).
        """
        state = self._rooms.get(room)
        if state is None:
            self._rooms[room] = _Room(position.epoch, 0)
            return Offered()
        if state.epoch is _HELD:
            state.held.append((position, _NOTICE))
            return Offered()
        if state.epoch == position.epoch or position.epoch in state.left:
            return Offered()
        had_epoch = bool(state.epoch)
        self._rooms[room] = state.leave_for(position.epoch, 0)
        return Offered(new_epoch=Position(position.epoch, 0) if had_epoch else None)

    def forget(self, room: str) -> None:
        """No member here any more: nothing to order."""
        self._rooms.pop(room, None)

    def holds(self, room: str) -> bool:
        """True while the room waits for :meth:`start` (or :meth:`start_unknown`)."""
        state = self._rooms.get(room)
        return state is not None and state.epoch is _HELD

    def start_unknown(self, room: str) -> list[tuple[Position, Any]]:
        """The start could not be learnt (the log was unreachable): the first message heard starts the room."""
        state = self._rooms.get(room)
        if state is None or state.epoch is not _HELD:
            return []
        del self._rooms[room]
        return self._replay(room, state.held)

    def offer(self, room: str, position: Position, item: Any) -> Offered:
        """Take one message; what can be delivered now comes back, in order."""
        state = self._rooms.get(room)
        if state is None:  # the first heard: it starts the room here
            self._rooms[room] = _Room(position.epoch, position.offset)
            return Offered([(position, item)])
        if state.epoch is _HELD:
            state.held.append((position, item))
            return Offered()
        if state.epoch == _NEW:  # a new room: its first epoch, from offset 1
            state.epoch = position.epoch
        if position.epoch != state.epoch and position.epoch in state.left:
            return Offered()  # a late message of an epoch the room left: never back to it
        offered = Offered()
        if position.epoch != state.epoch:  # the log lost what it had: the new epoch from its start
            offered.new_epoch = Position(position.epoch, 0)
            state = self._rooms[room] = state.leave_for(position.epoch, 0)
        offset = position.offset
        if offset <= state.last or offset in state.waiting:
            return offered  # a duplicate
        if offset > state.last + 1:
            if len(state.waiting) < self.max_waiting:
                state.waiting[offset] = item
            return offered  # missing() says what to read; skip_to() gives up on it
        offered.ready.append((position, item))
        state.last = offset
        self._release(state, offered.ready)
        return offered

    def missing(self, room: str) -> tuple[int, int] | None:
        """The offsets missing before the first that waits (first, last), or None: no gap."""
        state = self._rooms.get(room)
        if state is None or not state.epoch or not state.waiting:
            return None
        return state.last + 1, min(state.waiting) - 1

    def skip_to(self, room: str, offset: int) -> list[tuple[Position, Any]]:
        """Give up on what is missing up to ``offset`` (the log no longer has it); what waited after it is ready."""
        state = self._rooms.get(room)
        if state is None or not state.epoch or offset <= state.last:
            return []
        for early in [early for early in state.waiting if early <= offset]:
            del state.waiting[early]
        state.last = offset
        ready: list[tuple[Position, Any]] = []
        self._release(state, ready)
        return ready

    def _release(self, state: _Room, ready: list[tuple[Position, Any]]) -> None:
        epoch, waiting = state.epoch, state.waiting
        assert epoch, "released only once the room's epoch is known"
        while waiting:
            item = waiting.pop(state.last + 1, _NOTHING)
            if item is _NOTHING:
                return
            state.last += 1
            ready.append((Position(epoch, state.last), item))


_NOTHING = object()
