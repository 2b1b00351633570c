"""The server's registry of open connections: rooms, broadcast, and a backplane interface.

A broadcast returns at once and never waits on any one peer: the message is framed once,
the same bytes are queued to every peer with plain framing (peers that negotiated
compression get the message framed by their own compressor, which costs one deflate per
such peer), in order with everything else sent to that peer. A peer whose queue stays
over ``outbox_limit`` is closed with 1008 "slow consumer"; the others are not slowed.

Everything here runs in the hub of the server that owns the registry. A broadcast from
another OS thread (a Flask worker thread, say) is handed to that hub, not run here.
Under a threaded WSGI server (Werkzeug's and Django's development servers), each connection
is served by its own OS thread and hub: the registry is then told so
(:meth:`Registry.serve_from_threads`) and hands each delivery to the thread of its connection.

Example:
    >>> def chat(ws):
    ...     ws.join("lobby")
    ...     for message in ws:
    ...         if isinstance(message, Message.Text):
    ...             ws.registry.broadcast(message, room="lobby", exclude=ws)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..connection.connection import WebSocketConnection
from ..connection.threads import HubRef, allocate_real_lock
from ..message import Binary, Message, Text
from ..sansio.protocol import encode_frame
from .backplane import Backplane, LocalBackplane

_NO_ROOMS: frozenset[str] = frozenset()

__all__ = ["Backplane", "LocalBackplane", "Registry"]

#: The longest application id (``identify``): ids travel in every direct message's envelope.
MAX_ID_LENGTH = 1024


class Registry:
    """Every open connection of a server, with rooms; ``server.registry`` or ``ws.registry``.

    Connections are added when their upgrade completes and removed when they close,
    whatever the reason, leaving all their rooms. All methods run in the server's hub;
    from a real OS thread use :meth:`call_threadsafe` or :meth:`broadcast_threadsafe`.

    Args:
        backplane: how broadcasts reach other processes; in-process by default.

    Example:
        >>> registry = Registry()
        >>> len(registry)
        0
    """

    def __init__(self, backplane: Backplane | None = None) -> None:
        # A connection's rooms: the shared empty frozenset until it joins one (a set per
        # connection would cost ~200 bytes each on servers that never use rooms).
        self._rooms_of: dict[WebSocketConnection, set[str] | frozenset[str]] = {}
        self._rooms: dict[str, set[WebSocketConnection]] = {}
        self._by_id: dict[str, WebSocketConnection] = {}
        self._hub: HubRef | None = None  # the one hub it runs in; None before attach() and when threaded
        self._threaded = False  # connections are served by several OS threads, one hub each
        self._attached = False
        # A real lock (not gevent's): membership changes may come from several threads; held
        # for a few dict operations, never across a switch.
        self._lock = allocate_real_lock()
        self.backplane: Backplane = backplane if backplane is not None else LocalBackplane()

    # -- membership -----------------------------------------------------------------

    def add(self, ws: WebSocketConnection) -> None:
        """Register an open connection (its host does this after the upgrade).

        Raises:
            ValueError: another open connection has the same id.
        """
        if not self._attached:  # a host that never attached: this hub, from the first connection on
            self.attach()
        with self._lock:
            holder = self._by_id.get(ws.id)
            if holder is not None and holder is not ws:
                raise ValueError(f"id {ws.id!r} is taken by another connection")
            self._rooms_of.setdefault(ws, _NO_ROOMS)
            self._by_id[ws.id] = ws
        ws.registry = self

    def discard(self, ws: WebSocketConnection) -> None:
        """Forget a connection and take it out of every room (its host does this at close)."""
        emptied = []
        with self._lock:
            for room in self._rooms_of.pop(ws, ()):
                members = self._rooms.get(room)
                if members is not None:
                    members.discard(ws)
                    if not members:
                        del self._rooms[room]
                        emptied.append(room)
            forget = self._by_id.get(ws.id) is ws
            if forget:
                del self._by_id[ws.id]
            # Told under the lock, so that the backplane hears joins and leaves in their order.
            for room in emptied:
                self.backplane.left(room)
            if forget and not ws.id.startswith("#"):
                self.backplane.forgotten(ws.id)

    def identify(self, ws: WebSocketConnection, id: str) -> None:
        """Give ``ws`` an application id, for :meth:`get`: ``registry.identify(ws, user_id)``.

        Automatic ids start with ``#`` ("#17"), so application ids never collide with them.

        Raises:
            ValueError: another open connection already has that id, or ``id`` starts
                with ``#`` or is empty.
        """
        if not id or id.startswith("#") or len(id) > MAX_ID_LENGTH:
            raise ValueError(
                f"application ids must be 1-{MAX_ID_LENGTH} characters and not start with '#': {id[:40]!r}"
            )
        with self._lock:
            if ws not in self._rooms_of:
                raise ValueError(f"{ws!r} is not registered")
            holder = self._by_id.get(id)
            if holder is not None and holder is not ws:
                raise ValueError(f"id {id!r} is taken by another connection")
            previous = ws.id
            if self._by_id.get(previous) is ws:
                del self._by_id[previous]
            ws.id = id
            self._by_id[id] = ws
            if previous != id:
                if not previous.startswith("#"):
                    self.backplane.forgotten(previous)
                self.backplane.identified(id)

    def get(self, id: str) -> WebSocketConnection | None:
        """The open connection with this id, or None."""
        return self._by_id.get(id)

    def join(self, room: str, ws: WebSocketConnection) -> None:
        """Put ``ws`` in ``room`` (created on first use)."""
        with self._lock:
            rooms = self._rooms_of.get(ws)
            if rooms is None:
                raise ValueError(f"{ws!r} is not registered")
            if not isinstance(rooms, set):
                rooms = self._rooms_of[ws] = set()
            rooms.add(room)
            first = room not in self._rooms
            self._rooms.setdefault(room, set()).add(ws)
            if first:
                self.backplane.joined(room)

    def leave(self, room: str, ws: WebSocketConnection) -> None:
        """Take ``ws`` out of ``room``; an empty room disappears."""
        emptied = False
        with self._lock:
            rooms = self._rooms_of.get(ws)
            if isinstance(rooms, set):
                rooms.discard(room)
            members = self._rooms.get(room)
            if members is not None:
                members.discard(ws)
                if not members:
                    del self._rooms[room]
                    emptied = True
            if emptied:
                self.backplane.left(room)

    def members(self, room: str) -> frozenset[WebSocketConnection]:
        """A snapshot of the connections in ``room``."""
        return frozenset(self._rooms.get(room, ()))

    def rooms_of(self, ws: WebSocketConnection) -> frozenset[str]:
        """The rooms ``ws`` is in."""
        return frozenset(self._rooms_of.get(ws, ()))

    @property
    def rooms(self) -> frozenset[str]:
        """The names of the rooms that have members."""
        return frozenset(self._rooms)

    def __len__(self) -> int:
        return len(self._rooms_of)

    def __iter__(self) -> Iterator[WebSocketConnection]:
        """Iterate over a snapshot of the open connections."""
        return iter(list(self._rooms_of))

    def __contains__(self, ws: object) -> bool:
        return ws in self._rooms_of

    # -- broadcast -------------------------------------------------------------------

    def broadcast(
        self,
        message: Message,
        room: str | None = None,
        exclude: WebSocketConnection | Iterable[WebSocketConnection] | None = None,
    ) -> int:
        """Queue ``message`` to every connection (or every member of ``room``); returns at once.

        Args:
            message: a Text or Binary message.
            room: only this room's members; None for every connection.
            exclude: a connection, or several, to skip (typically the sender).

        Returns:
            How many local connections the message was queued to. Called from an OS
            thread other than the server's, the broadcast is handed to the server's hub
            (as :meth:`broadcast_threadsafe` does) and 0 is returned.
        """
        hub = self._hub
        if hub is not None and not hub.owns():
            self.broadcast_threadsafe(message, room, exclude)
            return 0
        count = self._deliver(message, room, exclude)
        self.backplane.publish(message, room)
        return count

    def _deliver(
        self,
        message: Message,
        room: str | None,
        exclude: WebSocketConnection | Iterable[WebSocketConnection] | None = None,
    ) -> int:
        if type(message) is not Text and type(message) is not Binary:
            raise TypeError(f"only Text and Binary messages are broadcast, not {type(message).__name__}")
        frame = encode_frame(message)
        size = len(frame)
        shared: dict[Any, bytes] = {None: frame}  # frames by framing key, made once each
        targets = list(self._rooms.get(room, ())) if room is not None else list(self._rooms_of)
        skip: set[WebSocketConnection] | tuple[()]
        if exclude is None:
            skip = ()
        elif isinstance(exclude, WebSocketConnection):
            skip = {exclude}
        else:
            skip = set(exclude)
        count = 0
        if self._threaded:
            return self._deliver_across_threads(targets, skip, message, shared, size)
        for ws in targets:
            if ws in skip:
                continue
            if ws._transport.push_message(message, shared, size):
                count += 1
        return count

    def _deliver_across_threads(
        self,
        targets: list[WebSocketConnection],
        skip: set[WebSocketConnection] | tuple[()],
        message: Message,
        shared: dict[Any, bytes],
        size: int,
    ) -> int:
        """Queue to each target in its own thread: here directly, elsewhere through its hub."""
        count = 0
        for ws in targets:
            if ws not in skip:
                count += ws._transport.push_message_threadsafe(message, shared, size)
        return count

    def close_all(self, code: int = 1001, reason: str = "Server shutdown") -> None:
        """Close every open connection (each sends what it has queued first); returns at once.

        Example:
            >>> Registry().close_all(1001, "Server shutdown")
        """
        for ws in self:
            ws._transport.run_in_own_thread(ws.close, code, reason)

    def send_to(self, id: str, message: Message) -> bool:
        """Queue ``message`` to the connection with this id, here or in another process.

        Returns at once, like :meth:`broadcast`. True when it was queued to a local
        connection or handed to the backplane (which delivers at most once); False when
        no process has it (without a backplane: no local connection has that id).

        Example:
            >>> Registry().send_to("alice", Message.text("hi"))
            False
        """
        if type(message) is not Text and type(message) is not Binary:
            raise TypeError(f"only Text and Binary messages are sent, not {type(message).__name__}")
        hub = self._hub
        if hub is not None and not hub.owns():
            self.call_threadsafe(self.send_to, id, message)  # from another thread: in our hub
            return True
        ws = self._by_id.get(id)
        if ws is None:
            return self.backplane.send_to(id, message)
        return self._push_one(ws, message)

    def _push_one(self, ws: WebSocketConnection, message: Message) -> bool:
        frame = encode_frame(message)
        return ws._transport.push_message_threadsafe(message, {None: frame}, len(frame))

    def _receive_remote(self, message: Message, room: str | None) -> None:
        self._deliver(message, room)

    def _receive_direct(self, id: str, message: Message) -> None:
        ws = self._by_id.get(id)
        if ws is not None:
            self._push_one(ws, message)

    # -- threads -----------------------------------------------------------------------

    def attach(self, loop: Any = None) -> None:
        """Bind to the current hub (the server does this when it starts) and the backplane.

        ``loop`` is that hub's loop when the caller has it at hand; the OS thread is the caller's.
        """
        with self._lock:  # two first connections in two threads attach once
            if not self._threaded:
                self._hub = HubRef(loop)
            attach, self._attached = not self._attached, True
        if attach:
            self.backplane.attach(self._receive_remote, self._receive_direct, threaded=self._threaded)

    def serve_from_threads(self) -> None:
        """Connections are served by several OS threads, each in its own hub (a threaded server).

        From then on every method may be called from any thread: deliveries and closes are
        handed to the thread that serves each connection, and :meth:`call_threadsafe` runs
        its function at once in the calling thread. Hosts call this before they add the
        first connection of a threaded WSGI server (Werkzeug's, Django's ``runserver``).

        Example:
            >>> registry = Registry()
            >>> registry.serve_from_threads()
        """
        with self._lock:
            if self._threaded:
                return
            self._threaded = True
            self._hub = None
        self.attach()

    @property
    def threaded(self) -> bool:
        """True after :meth:`serve_from_threads`."""
        return self._threaded

    def call_threadsafe(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` in the registry's hub, from any thread; returns at once.

        From another thread, ``func`` runs in a new greenlet of the registry's hub (it may
        block there); an exception it raises is logged (``ignitia_sync.connection``).

        Raises:
            ValueError: the registry's hub is gone (the thread of its server has ended).

        Example (a Flask view in a worker thread)::

            server.registry.call_threadsafe(server.registry.broadcast, Message.text("hi"))
        """
        hub = self._hub
        if hub is None or hub.owns():
            func(*args)  # this hub, no hub yet, or a threaded server (then ``func`` hands over)
            return
        if not hub.spawn_soon(func, *args):  # in a new greenlet there; a failure is logged
            raise ValueError("operation on destroyed loop: the registry's hub is gone (its server has stopped)")

    def broadcast_threadsafe(
        self,
        message: Message,
        room: str | None = None,
        exclude: WebSocketConnection | Iterable[WebSocketConnection] | None = None,
    ) -> None:
        """:meth:`broadcast` from any thread (a worker thread of a Flask app, say)."""
        if type(message) is not Text and type(message) is not Binary:
            raise TypeError(f"only Text and Binary messages are broadcast, not {type(message).__name__}")
        self.call_threadsafe(self.broadcast, message, room, exclude)
