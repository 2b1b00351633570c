"""The backplane interface (how a registry's calls reach other processes) and the local one.

Example:
    >>> LocalBackplane().stats()
    {'kind': 'local'}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..message import Message
from .positions import History, Position

__all__ = ["Backplane", "Deliver", "DeliverTo", "DeliverPositioned", "LocalBackplane", "PositionedBackplane",
           "on_remote_latency"]

#: Called with a broadcast from another process and its room (None: everyone).
Deliver = Callable[[Message, "str | None"], None]
#: Called with an application id and a direct message from another process (a Close: a
#: revocation, ``Registry.disconnect``; the connection with that id is closed with its code).
DeliverTo = Callable[[str, Message], None]

#: Called with a room, a message's position, the message (None: the room's log started a new
#: epoch, its messages before are gone) and the ``token`` its publish was given here (None for
#: another process's), in any order and possibly more than once: the registry orders them.
DeliverPositioned = Callable[[str, "Position", "Message | None", Any], None]

#: Called with the seconds from publish (in another process) to delivery here, for each message
#: that carried its publish time (``RedisBackplane(publish_times=True)``): how
#: ``ignitia_sync.metrics`` feeds its latency histogram. Empty unless metrics are in use; a hook
#: must not block. Example: ``on_remote_latency.append(lambda seconds: None)``.
on_remote_latency: list[Callable[[float], None]] = []


class Backplane(Protocol):
    """Carries broadcasts and direct sends between processes (for example over Redis pub/sub).

    ``Registry.broadcast`` delivers to its own connections, then calls :meth:`publish`;
    ``Registry.send_to`` an id that is not local calls :meth:`send_to`. The registry tells
    the backplane which rooms have local members (:meth:`joined`/:meth:`left`) and which
    application ids live here (:meth:`identified`/:meth:`forgotten`), so that it listens
    only to what this process needs. Messages from *other* processes are handed to the
    callbacks given in :meth:`attach`, in the registry's hub (or, for a threaded registry,
    from any thread). Every method but :meth:`attach` and :meth:`close` must return at once.

    A backplane may also offer ``claim(id, *, take_over=False) -> bool`` (the Redis one
    does): ``Registry.identify`` calls it before :meth:`identified` to claim an id across
    every process, and raises when it returns False. It is the one call that may wait.

    It may also offer ``disconnect(id, code, reason) -> bool`` (the Redis one does; it must
    return at once): ``Registry.disconnect`` calls it after closing its own connection
    identified as ``id``, and every other process then hands ``on_direct(id,
    Message.close_with_reason(code, reason))`` to its registry, which closes its connection
    with that id instead of sending it anything. Without it, a revocation stays in its process.

    And ``add_inspectable(host)`` (the Redis one has it): each host registers itself, so that
    the backplane can answer other processes' inspections with ``host.inspect_connections()``
    and close a connection by its own id with ``host.close_connection(id, code, reason)``.
    """

    def attach(self, on_broadcast: Deliver, on_direct: DeliverTo, *, threaded: bool = False) -> None:
        """Start: call ``on_broadcast(message, room)`` and ``on_direct(id, message)`` for remote ones.

        ``threaded``: the registry serves connections from several OS threads (run in a
        thread of your own, the callbacks hand over themselves).
        """

    def publish(self, message: Message, room: str | None) -> None:
        """Send a local broadcast to the other processes."""

    def send_to(self, id: str, message: Message) -> bool:
        """Send ``message`` to the connection identified as ``id`` in another process.

        Returns False when it cannot be sent at all (no other process, the queue is full).
        """

    def joined(self, room: str) -> None:
        """``room`` got its first local member: start receiving its broadcasts."""

    def left(self, room: str) -> None:
        """``room`` has no local member any more: stop receiving its broadcasts."""

    def identified(self, id: str) -> None:
        """A local connection took the application id ``id`` (direct sends come here)."""

    def forgotten(self, id: str) -> None:
        """The local connection with application id ``id`` is gone."""

    def stats(self) -> dict[str, Any]:
        """Counters for ``server.stats()["backplane"]``."""

    def close(self) -> None:
        """Stop receiving and release resources; idempotent."""


class LocalBackplane:
    """The default backplane: a single process, so there is nothing to carry.

    Example:
        >>> from ignitia_sync.broadcast.registry import Registry
        >>> registry = Registry(backplane=LocalBackplane())
        >>> registry.backplane.send_to("alice", Message.text("hi"))  # no other process knows alice
        False
    """

    def attach(self, on_broadcast: Deliver, on_direct: DeliverTo, *, threaded: bool = False) -> None:
        """Nothing arrives from elsewhere."""

    def publish(self, message: Message, room: str | None) -> None:
        """Nobody else to tell."""

    def send_to(self, id: str, message: Message) -> bool:
        """No other process: the id is unknown."""
        return False

    def joined(self, room: str) -> None:
        """Nothing to listen to."""

    def left(self, room: str) -> None:
        """Nothing to stop."""

    def identified(self, id: str) -> None:
        """Nothing to record."""

    def forgotten(self, id: str) -> None:
        """Nothing to forget."""

    def stats(self) -> dict[str, Any]:
        """One process: no backplane counters."""
        return {"kind": "local"}

    def close(self) -> None:
        """Nothing to release."""


@runtime_checkable
class PositionedBackplane(Protocol):
    """A backplane that gives room messages their positions, the same in every process (Redis).

    The registry then delivers a room's broadcast only when it hears it back, in position
    order (``broadcast/ordered_rooms.py``); it asks the backplane to confirm it hears a room
    before a join returns, and reads the room's log for what a member missed.
    """

    uid: bytes

    def attach_positions(self, on_positioned: DeliverPositioned, on_relistened: Callable[[str], None]) -> None:
        """Call ``on_positioned`` for every room message heard (this process's too), and
        ``on_relistened(room)`` when a room's subscription is back after a reconnect."""

    def publish_positioned(self, message: Message, room: str, history: History, token: Any = None) -> bool:
        """Queue ``message`` for ``room``: Redis gives its position and keeps it in the log.

        Never blocks. ``token`` comes back with the message to ``on_positioned``. False when it
        could not be queued (then the room's members are told of the gap).
        """

    def listen_now(self, room: str, timeout: float) -> bool:
        """Wait until this process surely hears ``room`` (its subscription confirmed); False after ``timeout``."""

    def read_log(
        self, room: str, after: Position | None, history: History, limit: int
    ) -> tuple[Position | None, list[tuple[Position, Message]]]:
        """Blocks the caller: the room's position now and the first ``limit`` messages after
        ``after`` (``after`` None: the last ``limit``), younger than ``history.max_age``.

        Raises:
            Exception: the log could not be read (Redis unreachable).
        """
