"""Rooms whose positions a backplane gives (Redis): publish, hear in order, join without a seam.

With a :class:`~ignitia_sync.broadcast.backplane.PositionedBackplane`, a room's message is not
delivered where it was broadcast: the backplane gives it its position (the same in every
process), and every process, this one too, delivers it when it hears it back, in position
order (:class:`~ignitia_sync.broadcast.sequencer.Sequencer`). What arrives early waits for
what comes before it; a gap still open after :data:`FILL_GRACE` seconds is read from the
room's log, and what the log no longer has is announced to the room's members (a ``gap``
frame to clients of the rooms wire format). After the backplane's subscription comes back, each
room catches up from its log the same way. Only rooms with a member here (or one joining) are
ordered: a process that broadcasts to rooms it has no member in (HTTP views, workers) keeps
nothing for them, and a room's state is forgotten when its last member here leaves.

A join is a *seam*: the member is added at once (its deliveries are held aside), the
backplane confirms that this process hears the room, the log is read after the client's
position, and then, under the registry's order lock, the member gets its ``joined`` frame,
what it missed, then what was held (a gap announced meanwhile in its place), none twice, and
from then on live messages. A join that raises, killed too, leaves nothing held behind.

Example (the registry makes one when its backplane gives positions)::

    registry = Registry(RedisBackplane("redis://127.0.0.1:6379/0"))
    registry.broadcast(Message.text("hi"), room="lobby")  # delivered when Redis has ordered it
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import gevent

from .._support.logs import LogThrottle
from ..connection.connection import WebSocketConnection
from ..message import Message
from .positions import (
    EPOCH_CHANGED,
    NO_HISTORY,
    TOO_OLD,
    UNAVAILABLE,
    History,
    Position,
    Recovery,
    RoomPositions,
)
from .rooms_protocol import encode_gap
from .sequencer import NEW_EPOCH, Sequencer

if TYPE_CHECKING:
    from .backplane import PositionedBackplane

__all__ = ["FILL_GRACE", "Members", "OrderedRooms", "recovery_from_log"]

log = logging.getLogger("ignitia_sync.broadcast")

#: Seconds a gap may stay open before the log is read: an early message usually only overtook
#: the one before it (the answer to a publish against the subscription).
FILL_GRACE = 0.1
#: The longest a join waits for the backplane to confirm it hears the room, and for the log.
JOIN_TIMEOUT = 5.0


class Members(Protocol):
    """What :class:`OrderedRooms` uses of its registry, which owns the rooms and the deliveries.

    The registry is the one owner of membership (``_rooms``, ``_add_member``, ``leave``), of
    each room's history settings (``_positions``), of the order lock and of delivery to the
    connections; ordered rooms decide *when* and *what*, through these names only.
    """

    _order: Any  # the registry's order lock: deliveries of positioned messages and join seams
    _rooms: dict[str, set[WebSocketConnection]]
    _positions: RoomPositions
    broadcasts: int
    deliveries: int

    def _deliver(
        self,
        message: Message,
        room: str | None,
        exclude: WebSocketConnection | Iterable[WebSocketConnection] | None = None,
        position: Position | None = None,
    ) -> int: ...

    def _add_member(self, room: str, ws: WebSocketConnection) -> None: ...

    def leave(self, room: str, ws: WebSocketConnection) -> None: ...

    def _push_one(self, ws: WebSocketConnection, message: Message, *, wrap: bool = True) -> bool: ...

    def _push_joined(self, ws: WebSocketConnection, room: str, recovery: Recovery) -> None: ...

    def _push_room_message(self, ws: WebSocketConnection, room: str, position: Position, message: Message) -> None: ...


class OrderedRooms:
    """The registry's side of positions given by its backplane (one per registry).

    Args:
        registry: the registry whose members get the messages.
        backplane: the backplane that gives positions.

    Example:
        >>> OrderedRooms.__name__
        'OrderedRooms'
    """

    def __init__(self, registry: Members, backplane: PositionedBackplane) -> None:
        self._registry = registry
        self._backplane = backplane
        self.sequencer = Sequencer()
        #: Members in the middle of a join: what was delivered to them meanwhile, held aside.
        #: (A gap announced meanwhile is held as (its position or None, its frame, _GAP).)
        self.seams: dict[tuple[WebSocketConnection, str], list[tuple[Position | None, Message, Any]]] = {}
        self._joining: collections.Counter[str] = collections.Counter()  # seams per room (_open_seam)
        # Frames without a position (presence) for members in the middle of a join: after it.
        self._held_frames: dict[tuple[WebSocketConnection, str], list[Message]] = {}
        #: Members that got the log further than this process has delivered live: live messages
        #: up to that position are theirs already (skipped for them until one passes it).
        self.floors: dict[tuple[WebSocketConnection, str], Position] = {}
        self._filling: set[str] = set()
        self._gap_log = LogThrottle(log, burst=10, interval=10.0, level=logging.WARNING)
        #: Gaps announced to members (the log lost messages, or could not be read).
        self.gaps = 0

    # -- publishing -------------------------------------------------------------------------

    def publish(
        self, message: Message, room: str, history: History, exclude: Any, ack: Callable[[Position], Any] | None = None
    ) -> int:
        """Hand a broadcast to the backplane; how many local members it will reach (it is delivered when heard).

        ``ack(position)`` is called (in the backplane's hub) once the message has its position.
        """
        token = exclude if ack is None else _Acked(exclude, ack)
        self._backplane.publish_positioned(message, room, history, token)
        members = self._registry._rooms.get(room, ())
        if exclude is None:
            return len(members)
        skip = {exclude} if isinstance(exclude, WebSocketConnection) else set(exclude)
        return sum(1 for ws in list(members) if ws not in skip)

    def attach(self) -> None:
        """Ask the backplane for every room message it hears, and for subscriptions that come back."""
        self._backplane.attach_positions(self.heard, self.relistened)

    def read(
        self, room: str, after: Position | None, history: History, limit: int
    ) -> tuple[Position | None, list[tuple[Position, Message]]]:
        """The backplane's log of ``room`` (blocks the caller): its position and up to ``limit`` messages."""
        return self._backplane.read_log(room, after, history, limit)

    # -- hearing ----------------------------------------------------------------------------

    def heard(self, room: str, position: Position, message: Message | None, exclude: Any) -> None:
        """A room message (or, ``message`` None, a new epoch's notice) from the backplane, in any order.

        ``exclude``: the connections its broadcast here excluded (None for another process's).
        """
        if isinstance(exclude, _Acked):  # a publish() waits for this message's position
            exclude.ack(position)
            exclude = exclude.exclude
        registry = self._registry
        with registry._order:
            if not self._ordering(room):  # no member here (an HTTP view's broadcast): nothing to order
                if message is not None:
                    registry.broadcasts += 1
                return
            if message is None:
                self._new_epoch(room, position)
                return
            offered = self.sequencer.offer(room, position, (message, exclude))
            if offered.new_epoch is not None:
                self._announce(room, Recovery(False, EPOCH_CHANGED, offered.new_epoch))
            self._deliver(room, offered.ready)
            gap = self.sequencer.missing(room) is not None
        if gap and room not in self._filling:
            self._filling.add(room)
            gevent.spawn_later(FILL_GRACE, self._fill, room)

    def _open_seam(self, ws: WebSocketConnection, room: str) -> None:
        """Under the order lock: ``ws`` is joining ``room``; what it is delivered meanwhile is held."""
        if (ws, room) not in self.seams:
            self._joining[room] += 1
        self.seams[(ws, room)] = []

    def _close_seam(self, ws: WebSocketConnection, room: str) -> list[tuple[Position | None, Message, Any]]:
        """Under the order lock: the join of ``ws`` is over (or gave up); what was held for it."""
        held = self.seams.pop((ws, room), None)
        if held is None:
            return []
        self._joining[room] -= 1
        if not self._joining[room]:
            del self._joining[room]
        return held

    def _ordering(self, room: str) -> bool:
        """Under the order lock: the room has members here, or one is joining (else nothing is ordered)."""
        return room in self._registry._rooms or self._joining[room] > 0

    def _new_epoch(self, room: str, position: Position) -> None:
        """Under the order lock: the room's log started again (messages were dropped): say so, go on.

        While a first member joins, the notice waits with what is held (told after its ``joined``).
        """
        offered = self.sequencer.notice(room, position)
        if offered.new_epoch is not None:
            self._announce(room, Recovery(False, EPOCH_CHANGED, offered.new_epoch))

    def _deliver(self, room: str, ready: list[tuple[Position, Any]]) -> None:
        registry = self._registry
        for position, item in ready:
            if item is NEW_EPOCH:  # an epoch change among what a join held: announced in its place
                self._announce(room, Recovery(False, EPOCH_CHANGED, position))
                continue
            message, exclude = item
            registry.deliveries += registry._deliver(message, room, exclude, position)
            registry.broadcasts += 1

    def _announce(self, room: str, recovery: Recovery) -> None:
        """Under the order lock: tell the room's members that messages are missing.

        A member in the middle of a join gets it in its place among what is held for it (after
        its ``joined`` frame, and not when what it replayed from the log already covers it).
        """
        self.gaps += 1
        self._gap_log.log("room %r lost messages (%s); its members are told to reload from %s",
                          room[:60], recovery.reason, recovery.position)
        gap: Message | None = None
        for ws in list(self._registry._rooms.get(room, ())):
            if ws._resume is None:
                continue
            gap = gap or Message.text(encode_gap(room, recovery))
            held = self.seams.get((ws, room))
            if held is not None:
                held.append((recovery.position, gap, _GAP))
            else:
                self._registry._push_one(ws, gap, wrap=False)

    def _fill(self, room: str) -> None:
        """Read what is still missing from the log; announce what the log no longer has."""
        try:
            with self._registry._order:
                missing = self.sequencer.missing(room)
                last = self.sequencer.last(room)
            if missing is None or last is None:
                return
            first, end = missing
            history = self._registry._positions.history_for(room) or History(max_messages=0)
            try:
                current, found = self._backplane.read_log(room, Position(last.epoch, first - 1), history,
                                                          end - first + 1)
            except Exception as exc:  # Redis unreachable: the subscription's return catches up
                self._gap_log.log("room %r: could not read its log to fill a gap (%s)", room[:60], exc)
                return
            with self._registry._order:
                now = self.sequencer.last(room)
                if not self._ordering(room) or now is None or now.epoch != last.epoch:
                    return  # the room was forgotten, or went on in another epoch (announced then)
                if current is None or current.epoch != last.epoch:  # the log started again meanwhile
                    # what is missing of this epoch is gone with it: the room goes on in the log's
                    # epoch from its start (None: the log is gone; the next message heard starts it)
                    self._announce(room, Recovery(False, EPOCH_CHANGED,
                                                  None if current is None else Position(current.epoch, 0)))
                    if current is None:
                        self.sequencer.forget(room)
                    else:
                        self._deliver(room, self.sequencer.start(room, Position(current.epoch, 0)))
                else:
                    for position, message in found:
                        if position.offset <= end:
                            self._deliver(room, self.sequencer.offer(room, position, (message, None)).ready)
                    still = self.sequencer.missing(room)
                    if still is not None and still[0] <= end:  # not in the log (trimmed, or no history)
                        self._announce(room, Recovery(False, TOO_OLD if history.enabled else NO_HISTORY,
                                                      Position(last.epoch, still[1])))
                        self._deliver(room, self.sequencer.skip_to(room, still[1]))
                again = self.sequencer.missing(room) is not None
        finally:
            self._filling.discard(room)
        if again and room not in self._filling:
            self._filling.add(room)
            gevent.spawn_later(FILL_GRACE, self._fill, room)

    def relistened(self, room: str) -> None:
        """The subscription is back (a reconnect): what was published meanwhile is read from the log."""
        gevent.spawn(self._catch_up, room)

    def _catch_up(self, room: str) -> None:
        """Read the log after the last position delivered; in a new epoch, from its start (twice at most)."""
        registry = self._registry
        history = registry._positions.history_for(room) or History(max_messages=0)
        for _ in range(2):
            with registry._order:
                last = self.sequencer.last(room)
            if last is None:
                return
            try:
                current, found = self._backplane.read_log(room, last, history, max(history.max_messages, 1))
            except Exception as exc:  # gone again: the next return catches up
                self._gap_log.log("room %r: could not catch up from its log (%s)", room[:60], exc)
                return
            with registry._order:
                if self.sequencer.last(room) != last:
                    continue  # delivered meanwhile: read again from there
                if current is None:  # the room has no log any more (Redis restarted empty, expired)
                    self._announce(room, Recovery(False, EPOCH_CHANGED, None))
                    self.sequencer.forget(room)
                    return
                if current.epoch != last.epoch:  # read the new epoch from its start
                    self._announce(room, Recovery(False, EPOCH_CHANGED, Position(current.epoch, 0)))
                    self.sequencer.start(room, Position(current.epoch, 0))
                    continue
                if current.offset > last.offset and (not found or found[0][0].offset > last.offset + 1):
                    resumed = found[0][0].offset - 1 if found else current.offset  # the log has from here on
                    self._announce(room, Recovery(False, TOO_OLD if history.enabled else NO_HISTORY,
                                                  Position(current.epoch, resumed)))
                    self._deliver(room, self.sequencer.skip_to(room, resumed))
                for position, message in found:
                    self._deliver(room, self.sequencer.offer(room, position, (message, None)).ready)
                return

    # -- joining ----------------------------------------------------------------------------

    def join(self, room: str, ws: WebSocketConnection, since: Position | None, history: History) -> Recovery:
        """Add ``ws`` to ``room`` without a seam: what it missed after ``since``, then live messages.

        On the wire: ``joined``, then what was replayed, held, announced (``gap``) and live, in
        position order. A join that raises (killed meanwhile: any BaseException) leaves nothing
        behind: its seam goes, ``ws`` leaves the room again, and the room goes on.
        """
        registry = self._registry
        with registry._order:
            # A member already (two threads joining at once; registry.join returns early otherwise):
            # a failure of this join leaves it one.
            member_before = ws in registry._rooms.get(room, ())
            self._open_seam(ws, room)
            self.sequencer.hold(room)  # a first member: nothing is delivered before the log says where it starts
            try:
                registry._add_member(room, ws)
            except BaseException:  # not registered (closed meanwhile): nothing to hold for it
                self._close_seam(ws, room)
                self._release(room)
                raise
        try:
            return self._seam(room, ws, since, history)
        except BaseException:
            self._abandon(room, ws, leave=not member_before)
            raise

    def _seam(self, room: str, ws: WebSocketConnection, since: Position | None, history: History) -> Recovery:
        """The rest of a join, once ``ws`` is a member with its deliveries held."""
        registry = self._registry
        current: Position | None = None
        found: list[tuple[Position, Message]] = []
        recovery: Recovery | None = None
        read = False
        try:
            if not self._backplane.listen_now(room, JOIN_TIMEOUT):
                raise TimeoutError(f"the backplane did not confirm hearing the room within {JOIN_TIMEOUT:g} s")
            limit = 0 if since is None else max(history.max_messages, 1)  # without since: the position only
            current, found = self._backplane.read_log(room, since, history, limit)
            read = True
        except Exception as exc:  # Redis unreachable: live messages come once it is back
            recovery = Recovery(since is None, None if since is None else UNAVAILABLE, None)
            log.info("join of %r to %r: the log could not be read (%s)", ws, room[:60], exc)
        with registry._order:
            if recovery is None:
                recovery, found = recovery_from_log(since, current, found, history)
            if self.sequencer.last(room) is None:  # the first member: the room starts where the log is
                # (None: the log has no epoch yet); unread, it starts with the first message heard.
                # What was held then goes to this member's seam too, announcements in their place.
                self._deliver(room, self.sequencer.start(room, current) if read else self.sequencer.start_unknown(room))
            held = self._close_seam(ws, room)
            if ws._resume is not None:
                registry._push_joined(ws, room, recovery)
            last = since.offset if since is not None and recovery.complete else -1
            epoch = recovery.position.epoch if recovery.position is not None else None
            for position, message in found:
                registry._push_room_message(ws, room, position, message)
                last = position.offset
            if recovery.position is not None:
                last = max(last, recovery.position.offset)
            for at, message, exclude in held:
                covered = at is not None and at.epoch == epoch and at.offset <= last  # replayed from the log already
                if exclude is _GAP:  # a gap announced meanwhile: news unless the replay covers it
                    if not covered:
                        registry._push_one(ws, message, wrap=False)
                    continue
                if covered or (exclude is not None and _excludes(exclude, ws)):
                    continue
                assert at is not None
                registry._push_room_message(ws, room, at, message)
            for frame in self._held_frames.pop((ws, room), ()):
                registry._push_one(ws, frame, wrap=False)
            here = self.sequencer.last(room)
            if epoch is not None and last > 0 and (here is None or here.epoch != epoch or here.offset < last):
                self.floors[(ws, room)] = Position(epoch, last)  # the log was ahead of this process's live order
            if not self._ordering(room):  # ws left (closed) during its join: forgotten now
                self.forget(room)
        return recovery

    def _release(self, room: str) -> None:
        """Under the order lock: a join gave up; if no other join waits, what the room held goes on."""
        if self.sequencer.holds(room) and not self._joining[room] > 0:
            self._deliver(room, self.sequencer.start_unknown(room))

    def _abandon(self, room: str, ws: WebSocketConnection, leave: bool) -> None:
        """A join that raised after adding ``ws``: its seam goes, ``ws`` leaves the room (unless it was a
        member before this join: ``leave`` False), the room goes on."""
        registry = self._registry
        with registry._order:
            self._close_seam(ws, room)
            self._held_frames.pop((ws, room), None)
            self.floors.pop((ws, room), None)
        try:
            if leave:
                registry.leave(room, ws)
        finally:
            with registry._order:
                self._release(room)
                if not self._ordering(room):
                    self.forget(room)

    def hold(self, ws: WebSocketConnection, room: str, frame: Message) -> bool:
        """Under the order lock: keep ``frame`` for ``ws`` until its join of ``room`` is done; False: not joining."""
        if (ws, room) not in self.seams:
            return False
        self._held_frames.setdefault((ws, room), []).append(frame)
        return True

    def forget(self, room: str) -> None:
        """No local member any more (under the registry's order lock): nothing to order for it.

        While a join of the room is in progress its state stays (the join forgets it at its end).
        """
        if self._joining[room] > 0:
            return
        self.sequencer.forget(room)
        for key in [key for key in self.floors if key[1] == room]:
            del self.floors[key]


#: What a seam holds in place of a message's exclusions for a ``gap`` frame announced meanwhile.
_GAP: Any = object()


class _Acked:
    """What a publish() gives its message: the connections it excludes, and who waits for its position."""

    __slots__ = ("ack", "exclude")

    def __init__(self, exclude: Any, ack: Callable[[Position], Any]) -> None:
        self.exclude, self.ack = exclude, ack


def _excludes(exclude: Any, ws: WebSocketConnection) -> bool:
    return exclude is ws if isinstance(exclude, WebSocketConnection) else ws in exclude


def recovery_from_log(
    since: Position | None, current: Position | None, found: list[tuple[Position, Message]], history: History
) -> tuple[Recovery, list[tuple[Position, Message]]]:
    """How complete a join (or a page of history) from ``since`` is, given the log's position and
    what was read after ``since``; the messages to replay (none unless complete).

    Example:
        >>> recovery_from_log(Position("e", 2), Position("e", 3), [(Position("e", 3), "m")], History())[0].complete
        True
        >>> recovery_from_log(Position("e", 1), Position("e", 3), [(Position("e", 3), "m")], History())[0].reason
        'too old'
    """
    if since is None:
        return Recovery(True, None, current), []
    if current is None or current.epoch != since.epoch or since.offset > current.offset:
        return Recovery(False, EPOCH_CHANGED, current), []
    if since.offset == current.offset:
        return Recovery(True, None, current), []
    if not history.enabled:
        return Recovery(False, NO_HISTORY, current), []
    if not found or found[0][0].offset != since.offset + 1:
        return Recovery(False, TOO_OLD, current), []
    return Recovery(True, None, current, len(found)), found
