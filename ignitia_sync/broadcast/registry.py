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

A registry starts its backplane (:meth:`Registry.attach`) when its host starts, or else on
its first use in the process (a connection, a broadcast, a ``send_to``): a worker that serves
only HTTP still publishes what its views broadcast.

Application ids, user ids and room names are checked once, here, whatever the backplane: each
must be a ``str`` that UTF-8 can encode, else :class:`ValueError` names the problem (a lone surrogate,
which ``json.loads`` makes of a client's ``"\\ud800"``, would fail every publish later).

Example:
    >>> def chat(ws):
    ...     ws.join("lobby")
    ...     for message in ws:
    ...         if isinstance(message, Message.Text):
    ...             ws.registry.broadcast(message, room="lobby", exclude=ws)
    >>> from ignitia_sync import Router
    >>> from ignitia_sync.testing import TestClient
    >>> with TestClient(Router().websocket("/chat", chat)) as client:
    ...     alice, bob = client.connect("/chat"), client.connect("/chat")
    ...     bob.send_text("bob is here")  # once alice hears it, both are in the room
    ...     print(alice.recv(timeout=5).data)
    ...     alice.send_text("hi bob")
    ...     print(bob.recv(timeout=5).data)
    bob is here
    hi bob
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gevent
from gevent._hub_local import get_hub_if_exists  # no public name; stable since gevent 1.3

from ..connection.connection import WebSocketConnection
from ..connection.threads import Answer, HubRef, allocate_real_lock
from ..exceptions import ConnectionClosed, MessageDropped
from ..message import Binary, Close, Message, Text, check_revocation_close, not_broadcastable
from ..middleware import AuthInfo
from ..sansio.protocol import encode_frame
from .backplane import Backplane, LocalBackplane, PositionedBackplane
from .ordered_rooms import OrderedRooms, recovery_from_log
from .positions import (
    DEFAULT_HISTORY,
    NO_HISTORY,
    HistoryChoice,
    Position,
    Recovery,
    RoomPositions,
)
from .presence import PresenceBook
from .rooms_protocol import (
    encode_direct,
    encode_joined,
    encode_left,
    encode_presence,
    encode_room_message,
)

_NO_ROOMS: frozenset[str] = frozenset()

log = logging.getLogger("ignitia_sync.broadcast")

__all__ = ["Backplane", "LocalBackplane", "Registry"]

#: The longest application id (``identify``): ids travel in every direct message's envelope.
MAX_ID_LENGTH = 1024


def _check_name(what: str, name: str) -> None:
    """Refuse an id or room name that no backplane can carry: not a ``str``, or not encodable as UTF-8.

    Raises:
        TypeError: ``name`` is not a ``str``.
        ValueError: it holds a character UTF-8 cannot encode (a lone surrogate).

    Example:
        >>> _check_name("room name", "caf\\u00e9")
        >>> _check_name("application id", "\\ud800")
        Traceback (most recent call last):
        ...
        ValueError: application id '\\ud800' is not valid Unicode text: a lone surrogate at index 0 ...
    """
    if not isinstance(name, str):
        raise TypeError(f"a {what} is a str, not {type(name).__name__}")
    if name.isascii():  # nearly always: no encoding needed
        return
    try:
        name.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} {name[:40]!r} is not valid Unicode text: a lone surrogate at index {exc.start} "
            "(UTF-8 cannot encode it)"
        ) from None


def _check_application_id(id: str, what: str = "application id") -> None:
    """Refuse what cannot be an application id (:meth:`Registry.identify`, :meth:`Registry.disconnect`).

    User ids (:meth:`Registry.set_user`) follow the same rules (``what="user id"``): a
    revocation names either kind, and an automatic id ("#17") is neither.

    Raises:
        TypeError: ``id`` is not a ``str``.
        ValueError: it is empty, longer than ``MAX_ID_LENGTH``, starts with ``#`` (the
            automatic ids) or is not encodable as UTF-8.

    Example:
        >>> _check_application_id("alice")
        >>> _check_application_id("#17")
        Traceback (most recent call last):
        ...
        ValueError: application ids must be 1-1024 characters and not start with '#': '#17'
        >>> _check_application_id("", "user id")
        Traceback (most recent call last):
        ...
        ValueError: user ids must be 1-1024 characters and not start with '#': ''
    """
    _check_name(what, id)
    if not id or id.startswith("#") or len(id) > MAX_ID_LENGTH:
        raise ValueError(f"{what}s must be 1-{MAX_ID_LENGTH} characters and not start with '#': {id[:40]!r}")


def _user_from_auth(ws: WebSocketConnection) -> str | None:
    """The user id of the :class:`~ignitia_sync.middleware.AuthInfo` that middleware attached to ``ws``, if any.

    Raises:
        TypeError, ValueError: its ``user_id`` is not a user id (see :func:`_check_application_id`).

    Example:
        >>> class Bare:
        ...     extensions = {"auth": AuthInfo("alice")}
        >>> _user_from_auth(Bare())
        'alice'
        >>> Bare.extensions = {"auth": AuthInfo(42)}
        >>> _user_from_auth(Bare())
        Traceback (most recent call last):
        ...
        TypeError: AuthInfo.user_id of this connection: a user id is a str, not int
    """
    extensions = ws.extensions
    info = extensions.get(AuthInfo)
    if not isinstance(info, AuthInfo):
        info = extensions.get("auth")
        if not isinstance(info, AuthInfo):
            return None
    user_id: Any = info.user_id
    try:
        _check_application_id(user_id, "user id")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"AuthInfo.user_id of this connection: {exc}") from None
    return str(user_id)


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

    def __init__(
        self, backplane: Backplane | None = None, *, history: HistoryChoice = DEFAULT_HISTORY, presence: bool = False
    ) -> None:
        # A connection's rooms: the shared empty frozenset until it joins one (a set per
        # connection would cost ~200 bytes each on servers that never use rooms).
        self._rooms_of: dict[WebSocketConnection, set[str] | frozenset[str]] = {}
        self._rooms: dict[str, set[WebSocketConnection]] = {}
        self._by_id: dict[str, WebSocketConnection] = {}
        # The connections of each user (several per user: two tabs). Only connections that
        # have a user cost anything here; each one's user is its ``ws._user_id`` slot.
        self._users: dict[str, set[WebSocketConnection]] = {}
        self._hub: HubRef | None = None  # the one hub it runs in; None before attach() and when threaded
        self._threaded = False  # connections are served by several OS threads, one hub each
        self._attached = False
        # A real lock (not gevent's): membership changes may come from several threads; held
        # for a few dict operations, never across a switch.
        self._lock = allocate_real_lock()
        self.backplane: Backplane = backplane if backplane is not None else LocalBackplane()
        # Rooms' positions and history. A positioned broadcast (append + delivery) and a join
        # (what was missed + membership) each hold this real lock, so that every member gets a
        # room's messages in position order, and a join's seam has no gap and no duplicate.
        self._positions = RoomPositions(history)
        self._order = allocate_real_lock()
        # With a backplane that gives positions (Redis), rooms are ordered there, not here.
        self._ordered = OrderedRooms(self, self.backplane) if isinstance(self.backplane, PositionedBackplane) else None
        # Connections that speak the rooms wire format (ws._resume is not None): while there
        # are none, a delivery frames each message once, as before.
        self._wire_members = 0
        # Presence (presence=True): this process's users per room; shared through a backplane
        # that offers it (Redis), whose events come back to every process with members.
        self._presence: PresenceBook | None = PresenceBook() if presence else None
        self._presence_callbacks: list[Callable[[str, str, bool], Any]] = []
        self._presence_events: list[tuple[str, str, bool]] = []  # found under the lock, told after it
        self._presence_telling = False  # a caller is telling them (_tell_presence)
        #: Broadcasts delivered here (made here or received from the backplane), and how many
        #: connections they were queued to in all (for monitoring: ``ignitia_sync.metrics``).
        self.broadcasts = 0
        self.deliveries = 0

    # -- membership -----------------------------------------------------------------

    def add(self, ws: WebSocketConnection) -> None:
        """Register an open connection (its host does this after the upgrade).

        A connection whose ``ws.extensions`` hold an :class:`~ignitia_sync.middleware.AuthInfo`
        (``AuthMiddleware`` attached it) becomes a connection of its ``user_id`` (:meth:`set_user`).

        Raises:
            ValueError: another open connection has the same id.
            TypeError, ValueError: the AuthInfo's ``user_id`` is not a user id (not a ``str``,
                empty, starting with ``#``...): the connection is not registered.
        """
        user_id = _user_from_auth(ws) if ws.extensions else None  # checked before anything changes
        if not self._attached:  # a host that never attached: this hub, from the first connection on
            self.attach()
        with self._lock:
            holder = self._by_id.get(ws.id)
            if holder is not None and holder is not ws:
                raise ValueError(f"id {ws.id!r} is taken by another connection")
            if ws not in self._rooms_of and ws._resume is not None:
                self._wire_members += 1
            self._rooms_of.setdefault(ws, _NO_ROOMS)
            self._by_id[ws.id] = ws
            if user_id is not None:
                self._set_user(ws, user_id)
        ws.registry = self

    def discard(self, ws: WebSocketConnection) -> None:
        """Forget a connection and take it out of every room (its host does this at close)."""
        emptied = []
        with self._lock:
            if ws in self._rooms_of and ws._resume is not None:
                self._wire_members -= 1
            for room in self._rooms_of.pop(ws, ()):
                members = self._rooms.get(room)
                if members is not None:
                    if ws in members and ws._user_id is not None:
                        self._presence_left(room, ws._user_id)
                    members.discard(ws)
                    if not members:
                        del self._rooms[room]
                        emptied.append(room)
            forget = self._by_id.get(ws.id) is ws
            if forget:
                del self._by_id[ws.id]
            if ws._user_id is not None:
                self._unindex_user(ws)  # ws.user_id itself stays: whose connection it was
            # Told under the lock, so that the backplane hears joins and leaves in their order.
            for room in emptied:
                self.backplane.left(room)
            if forget and not ws.id.startswith("#"):
                self.backplane.forgotten(ws.id)
        self._tell_presence()
        for room in emptied:
            self._forget_order(room)

    def identify(self, ws: WebSocketConnection, id: str, *, take_over: bool = False) -> None:
        """Give ``ws`` an application id, for :meth:`get` and :meth:`send_to`: ``registry.identify(ws, user_id)``.

        One connection per id (cluster-wide with a backplane that claims ids); a user with
        several connections (two tabs) is :meth:`set_user`'s job, which :meth:`disconnect` follows too.
        Automatic ids start with ``#`` ("#17"), so application ids never collide with them.
        With a backplane that claims ids cluster-wide (``RedisBackplane.claim``), the id is
        claimed first: this waits for one round trip to Redis (at most its
        ``publish_timeout``; while Redis is unreachable it does not wait, and a conflict
        found once it is back is counted in the backplane's ``ids_lost``).
        ``take_over=True`` moves an id that a connection in another process has to ``ws``:
        direct messages come here from then on (close the other connection yourself).

        Raises:
            ValueError: another open connection already has that id, here or in another
                process (unless ``take_over``), or ``id`` starts with ``#``, is empty, longer
                than ``MAX_ID_LENGTH`` or not encodable as UTF-8.
            TypeError: ``id`` is not a ``str``.
        """
        _check_application_id(id)
        with self._lock:
            self._check_identify(ws, id)
            if ws.id == id:
                return  # already its id: nothing to claim
        claim = getattr(self.backplane, "claim", None)  # a Backplane without claim(): ids are per process
        if claim is not None and not claim(id, take_over=take_over):  # may wait for Redis: never under the lock
            raise ValueError(
                f"id {id!r} is taken by a connection in another process "
                "(identify(ws, id, take_over=True) moves it here)"
            )
        with self._lock:
            try:
                self._check_identify(ws, id)  # again: the registry may have changed while the claim waited
            except ValueError:
                if claim is not None and id not in self._by_id:
                    self.backplane.forgotten(id)  # claimed for no connection here: give the entry back
                raise
            previous = ws.id
            if self._by_id.get(previous) is ws:
                del self._by_id[previous]
            ws.id = id
            self._by_id[id] = ws
            if previous != id:
                if not previous.startswith("#"):
                    self.backplane.forgotten(previous)
                self.backplane.identified(id)

    def _check_identify(self, ws: WebSocketConnection, id: str) -> None:
        """Under the lock: ``ws`` is registered and no other connection here has ``id``."""
        if ws not in self._rooms_of:
            raise ValueError(f"{ws!r} is not registered")
        holder = self._by_id.get(id)
        if holder is not None and holder is not ws:
            raise ValueError(f"id {id!r} is taken by another connection")

    def get(self, id: str) -> WebSocketConnection | None:
        """The open connection with this id, or None."""
        return self._by_id.get(id)

    # -- users -----------------------------------------------------------------------

    def set_user(self, ws: WebSocketConnection, user_id: str | None) -> None:
        """Make ``ws`` a connection of ``user_id`` (None: of no user); ``ws.user_id`` tells it.

        A user may have any number of connections, in this process and in others (two tabs,
        two devices): nothing is claimed, nothing is unique, unlike :meth:`identify`.
        :meth:`disconnect` closes all of them, everywhere; :meth:`connections_of` lists those
        here. ``AuthMiddleware`` needs no call: its ``AuthInfo.user_id`` is taken when the
        connection is added. Call it from a handler that knows the user another way (Flask's
        ``current_user``, Django's ``request.user``: ``str(request.user.pk)``). Safe from any thread.

        Raises:
            ValueError: ``ws`` is not registered (closed already), or ``user_id`` is empty,
                starts with ``#``, is longer than ``MAX_ID_LENGTH`` or not encodable as UTF-8.
            TypeError: ``user_id`` is not a ``str`` (nor None).

        Example:
            >>> from ignitia_sync import Router
            >>> from ignitia_sync.testing import TestClient
            >>> def notes(ws):
            ...     ws.registry.set_user(ws, "alice")
            ...     ws.send_text(f"{ws.user_id} has {len(ws.registry.connections_of('alice'))} connection(s)")
            ...     for message in ws:
            ...         pass
            >>> with TestClient(Router().websocket("/notes", notes)) as client:
            ...     print(client.connect("/notes").recv(timeout=5).data)
            ...     print(client.connect("/notes").recv(timeout=5).data)
            alice has 1 connection(s)
            alice has 2 connection(s)
        """
        if user_id is not None:
            _check_application_id(user_id, "user id")
        with self._lock:
            if ws not in self._rooms_of:
                raise ValueError(f"{ws!r} is not registered")
            self._set_user(ws, user_id)
        self._tell_presence()

    def _set_user(self, ws: WebSocketConnection, user_id: str | None) -> None:
        """Under the lock: move ``ws`` from its user's entry (if any) to ``user_id``'s."""
        if ws._user_id == user_id:
            return
        rooms = self._rooms_of.get(ws, ())
        if ws._user_id is not None:
            self._unindex_user(ws)
            for room in rooms:
                self._presence_left(room, ws._user_id)
        ws._user_id = user_id
        if user_id is not None:
            self._users.setdefault(user_id, set()).add(ws)
            for room in rooms:
                self._presence_joined(room, user_id)

    def _unindex_user(self, ws: WebSocketConnection) -> None:
        """Under the lock: take ``ws`` out of its user's entry; the last one out removes the entry."""
        assert ws._user_id is not None
        connections = self._users.get(ws._user_id)
        if connections is not None:
            connections.discard(ws)
            if not connections:
                del self._users[ws._user_id]

    def connections_of(self, user_id: str) -> frozenset[WebSocketConnection]:
        """A snapshot of the open connections of ``user_id`` in this process (safe from any thread).

        Example:
            >>> Registry().connections_of("alice")
            frozenset()
        """
        with self._lock:
            return frozenset(self._users.get(user_id, ()))

    def join(self, room: str, ws: WebSocketConnection, since: Position | None = None) -> Recovery:
        """Put ``ws`` in ``room`` (created on first use), after what it missed since ``since``.

        Once it returns, every later broadcast to the room reaches ``ws``, in order, once.
        With ``since`` (the last position this client saw in the room), the messages the
        room's history holds after it are queued to ``ws`` first, then live ones: no gap, no
        duplicate at the seam. A client of the rooms wire format gives its ``since`` in its
        hello (used by its first join of that room), and gets a ``joined`` frame first.
        Joining a room ``ws`` is in already changes nothing.

        Returns:
            How complete the recovery was (complete when ``since`` is None).

        Raises:
            ValueError: ``ws`` is not registered, or ``room`` is not encodable as UTF-8.

        Example:
            >>> from ignitia_sync import Router
            >>> from ignitia_sync.testing import TestClient
            >>> def news(ws):
            ...     ws.registry.broadcast(Message.text("old"), room="news")
            ...     first = ws.registry.position("news")
            ...     ws.registry.broadcast(Message.text("missed"), room="news")
            ...     recovery = ws.join("news", since=first)
            ...     ws.send_text(f"complete={recovery.complete} replayed={recovery.replayed}")
            >>> with TestClient(Router().websocket("/news", news)) as client:
            ...     ws = client.connect("/news")
            ...     print(ws.recv(timeout=5).data, "/", ws.recv(timeout=5).data)
            missed / complete=True replayed=1
        """
        _check_name("room name", room)
        if ws not in self._rooms_of:
            raise ValueError(f"{ws!r} is not registered")
        resume = ws._resume
        if since is None and resume:
            since = resume.pop(room, None)  # the wire client's position: for its first join only
        history = self._positions.history_for(room)
        if room in self.rooms_of(ws):
            return Recovery(True, None, None if history is None else self.position(room))
        if history is None:  # no positions in this room
            recovery = Recovery(since is None, None if since is None else NO_HISTORY, None)
            if resume is not None:
                self._push_joined(ws, room, recovery)
            self._add_member(room, ws)
        elif self._ordered is not None:  # positions from the backplane: the seam is theirs
            recovery = self._ordered.join(room, ws, since, history)
        else:
            log = self._positions.log_for(room)
            assert log is not None
            with self._order:
                recovery, missed = log.since(room, since)
                if resume is not None:
                    self._push_joined(ws, room, recovery)
                for position, message in missed:
                    self._push_room_message(ws, room, position, message)
                self._add_member(room, ws)
        self._tell_presence()
        return recovery

    def _push_joined(self, ws: WebSocketConnection, room: str, recovery: Recovery) -> None:
        """The rooms wire format's ``joined`` frame to ``ws``."""
        self._push_one(ws, Message.text(encode_joined(room, recovery)), wrap=False)

    def _push_room_message(self, ws: WebSocketConnection, room: str, position: Position, message: Message) -> None:
        """A room's message to ``ws`` alone (a replay): with its position in the rooms wire format."""
        self._push_one(ws, _wire_message(room, position, message) if ws._resume is not None else message, wrap=False)

    def _add_member(self, room: str, ws: WebSocketConnection) -> None:
        with self._lock:
            rooms = self._rooms_of.get(ws)
            if rooms is None:
                raise ValueError(f"{ws!r} is not registered")
            if not isinstance(rooms, set):
                rooms = self._rooms_of[ws] = set()
            rooms.add(room)
            first = room not in self._rooms
            members = self._rooms.setdefault(room, set())
            arrived = ws not in members
            members.add(ws)
            if first:
                self.backplane.joined(room)
            if arrived and ws._user_id is not None:
                self._presence_joined(room, ws._user_id)  # told by join(), outside every lock

    def leave(self, room: str, ws: WebSocketConnection) -> None:
        """Take ``ws`` out of ``room``; an empty room disappears.

        Raises:
            ValueError: ``room`` is not encodable as UTF-8 (no room has such a name).
        """
        _check_name("room name", room)
        emptied = False
        with self._lock:
            rooms = self._rooms_of.get(ws)
            if ws._resume is not None and rooms is not None and room in rooms:
                self._push_one(ws, Message.text(encode_left(room)), wrap=False)
            if isinstance(rooms, set):
                rooms.discard(room)
            members = self._rooms.get(room)
            if members is not None:
                if ws in members and ws._user_id is not None:
                    self._presence_left(room, ws._user_id)
                members.discard(ws)
                if not members:
                    del self._rooms[room]
                    emptied = True
            if emptied:
                self.backplane.left(room)
        self._tell_presence()
        if emptied:
            self._forget_order(room)

    def _forget_order(self, room: str) -> None:
        """A room emptied here: nothing to order for it any more (the order lock is taken after the membership lock is free)."""
        if self._ordered is not None:
            with self._order:
                if room not in self._rooms:
                    self._ordered.forget(room)

    def position(self, room: str) -> Position | None:
        """The room's current position (its last message's); None when it keeps no positions.

        Example:
            >>> registry = Registry()
            >>> _ = registry.broadcast(Message.text("hi"), room="lobby")
            >>> registry.position("lobby").offset
            1
        """
        _check_name("room name", room)
        history = self._positions.history_for(room)
        if history is None:
            return None
        if self._ordered is not None:  # from the backplane (blocks for one round trip)
            return self._ordered.read(room, None, history, 0)[0]
        log = self._positions.log_for(room)
        assert log is not None
        with self._order:
            return log.position(room)

    def history(
        self, room: str, since: Position | None = None, limit: int = 100
    ) -> tuple[Recovery, list[tuple[Position, Message]]]:
        """What the room's history holds: the last ``limit`` messages, or the first ``limit`` after ``since``.

        Returns:
            (the recovery: complete when nothing between ``since`` and the first message
            returned is missing; the messages with their positions, oldest first). Page on with
            ``since`` set to the last position returned.

        Raises:
            ValueError: ``limit`` below 1, or ``room`` not encodable as UTF-8.

        Example:
            >>> registry = Registry()
            >>> for text in ("a", "b", "c"):
            ...     _ = registry.broadcast(Message.text(text), room="lobby")
            >>> recovery, messages = registry.history("lobby", limit=2)
            >>> [(position.offset, message.data) for position, message in messages]
            [(2, 'b'), (3, 'c')]
        """
        _check_name("room name", room)
        if type(limit) is not int or limit < 1:
            raise ValueError(f"limit must be an int of at least 1, not {limit!r}")
        history = self._positions.history_for(room)
        if history is None:
            return Recovery(since is None, None if since is None else NO_HISTORY, None), []
        if self._ordered is not None:  # from the backplane's log (blocks for one round trip)
            current, found = self._ordered.read(room, since, history, limit)
            if since is None:
                return Recovery(True, None, current, len(found)), found
            recovery, found = recovery_from_log(since, current, found, history)
            return recovery, found
        log = self._positions.log_for(room)
        assert log is not None
        with self._order:
            if since is None:
                found = log.recent(room, limit=limit)
                return Recovery(True, None, log.position(room), len(found)), found
            recovery, found = log.since(room, since)
        if len(found) > limit:
            found = found[:limit]
            recovery = Recovery(True, None, recovery.position, limit)
        return recovery, found

    # -- presence ------------------------------------------------------------------------

    def _presence_joined(self, room: str, user: str) -> None:
        """Under the lock: a connection of ``user`` is in ``room`` now."""
        if self._presence is not None:
            self._presence_changed(room, user, self._presence.add(room, user), True)

    def _presence_left(self, room: str, user: str) -> None:
        """Under the lock: a connection of ``user`` left ``room``."""
        if self._presence is not None:
            self._presence_changed(room, user, self._presence.remove(room, user), False)

    def _presence_changed(self, room: str, user: str, count: int, joined: bool) -> None:
        share = getattr(self.backplane, "presence_changed", None)
        if share is not None:  # the backplane counts every process; its events come back here
            share(room, user, count)
        elif count == (1 if joined else 0):  # this process alone: its own arrivals and departures
            self._presence_events.append((room, user, joined))

    def _tell_presence(self) -> None:
        """Outside the lock: the arrivals and departures found under it (callbacks may use the registry).

        One caller at a time tells them, in the order they were found, until none are left;
        a caller that finds another telling leaves its events to it. No lock is held while
        they are told: a callback may switch greenlets or use the registry.
        """
        if not self._presence_events:
            return
        with self._lock:
            if self._presence_telling:
                return
            self._presence_telling = True
        events: list[tuple[str, str, bool]] = []
        try:
            while True:
                with self._lock:
                    events, self._presence_events = self._presence_events, []
                    if not events:
                        self._presence_telling = False
                        return
                while events:
                    self._presence_event(*events[0])
                    del events[0]
        except BaseException:  # killed while telling (a callback that switched): the rest is told later
            with self._lock:
                self._presence_events[:0] = events[1:]
                self._presence_telling = False
            raise

    def _presence_event(self, room: str, user: str, joined: bool) -> None:
        """``user`` arrived in (or left) ``room``, in every process together: the callbacks, the wire members."""
        for callback in list(self._presence_callbacks):
            try:
                callback(room, user, joined)
            except Exception:
                log.exception("presence callback %r failed", callback)
        if self._wire_members:
            frame = Message.text(encode_presence(room, user, joined))
            with self._order:  # a member in the middle of a join gets it after its joined frame
                for ws in list(self._rooms.get(room, ())):
                    if ws._resume is not None and not (self._ordered is not None and self._ordered.hold(ws, room, frame)):
                        self._push_one(ws, frame, wrap=False)

    def presence(self, room: str) -> dict[str, int]:
        """Who is in ``room``: each user id (``set_user``, ``AuthInfo``) and how many connections it has there.

        Across every process with a backplane that shares presence (``RedisBackplane``; this
        blocks for one round trip), else this process's. Needs ``presence=True`` (the
        host's setting); connections without a user are not listed.

        Raises:
            RuntimeError: the registry was made without ``presence=True``.

        Example:
            >>> from ignitia_sync import Router
            >>> from ignitia_sync.testing import TestClient
            >>> def chat(ws, user):
            ...     ws.registry.set_user(ws, user)
            ...     ws.join("lobby")
            ...     ws.send_json(ws.registry.presence("lobby"))
            ...     for message in ws:
            ...         pass
            >>> with TestClient(Router().websocket("/chat/:user", chat), presence=True) as client:
            ...     print(client.connect("/chat/alice").recv_json(timeout=5))
            ...     print(client.connect("/chat/alice").recv_json(timeout=5))
            ...     print(client.connect("/chat/bob").recv_json(timeout=5))
            {'alice': 1}
            {'alice': 2}
            {'alice': 2, 'bob': 1}
        """
        _check_name("room name", room)
        if self._presence is None:
            raise RuntimeError("presence is off: make the host with presence=True (HostSettings.presence)")
        read = getattr(self.backplane, "read_presence", None)
        if read is not None:
            return dict(read(room))
        with self._lock:
            return self._presence.users(room)

    def on_presence(self, callback: Callable[[str, str, bool], Any]) -> Callable[[str, str, bool], Any]:
        """Call ``callback(room, user_id, joined)`` when a user arrives in a room or leaves it (all its connections).

        With a backplane that shares presence, for every process's users, in each process
        that has members in the room; it runs in the registry's hub (or the backplane's):
        it must not block. Usable as a decorator. Clients of the rooms wire format get a
        ``presence`` frame in any case.

        Example:
            >>> registry = Registry(presence=True)
            >>> @registry.on_presence
            ... def said(room, user, joined):
            ...     print(room, user, "joined" if joined else "left")
        """
        self._presence_callbacks.append(callback)
        return callback

    def members(self, room: str) -> frozenset[WebSocketConnection]:
        """A snapshot of the connections in ``room``."""
        return frozenset(self._rooms.get(room, ()))

    def memberships(self) -> dict[WebSocketConnection, frozenset[str]]:
        """Every open connection and its rooms, taken at one moment (safe from any thread).

        Example:
            >>> Registry().memberships()
            {}
        """
        with self._lock:
            return {ws: frozenset(rooms) for ws, rooms in self._rooms_of.items()}

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

        Raises:
            ValueError: ``room`` is not encodable as UTF-8; or, in a room with positions, the
                message is over the Redis backplane's ``max_message_size`` (refused: nothing
                delivered anywhere).
        """
        if room is not None:
            _check_name("room name", room)
        if not self._attached:
            self._attach_on_first_use()
        hub = self._hub
        if hub is not None and not hub.owns():
            self.broadcast_threadsafe(message, room, exclude)
            return 0
        if room is not None and self._ordered is not None:
            history = self._positions.history_for(room)
            if history is not None:  # ordered by the backplane: delivered here when heard back
                if type(message) is not Text and type(message) is not Binary:
                    raise not_broadcastable(message)
                return self._ordered.publish(message, room, history, exclude)
        count = self._deliver_here(message, room, exclude)
        self.backplane.publish(message, room)
        return count

    def _deliver_here(
        self,
        message: Message,
        room: str | None,
        exclude: WebSocketConnection | Iterable[WebSocketConnection] | None = None,
    ) -> int:
        """Deliver to this process's members: a room's message at its next position, in order."""
        return self._deliver_at(message, room, exclude)[0]

    def _deliver_at(
        self,
        message: Message,
        room: str | None,
        exclude: WebSocketConnection | Iterable[WebSocketConnection] | None = None,
    ) -> tuple[int, Position | None]:
        """:meth:`_deliver_here`, and the position the message got here (None: a room without positions)."""
        if type(message) is not Text and type(message) is not Binary:
            raise not_broadcastable(message)
        log = self._positions.log_for(room) if room is not None else None
        position = None
        if log is None:
            count = self._deliver(message, room, exclude)
        else:
            assert room is not None
            with self._order:
                position = log.append(room, message, size=len(message.data))
                count = self._deliver(message, room, exclude, position)
        self.broadcasts += 1
        self.deliveries += count
        return count, position

    def _publish_here(self, message: Message, room: str, exclude: Any) -> Position:
        """In the registry's hub: a room's message at its position here, then to the backplane."""
        position = self._deliver_at(message, room, exclude)[1]
        assert position is not None
        self.backplane.publish(message, room)
        return position

    def publish(
        self,
        message: Message,
        room: str,
        *,
        exclude: WebSocketConnection | Iterable[WebSocketConnection] | None = None,
        timeout: float = 5.0,
    ) -> Position:
        """:meth:`broadcast` to ``room``, then wait until the message has its position: an acknowledgement.

        With a Redis backplane, it returns once Redis accepted the message (it is in the room's
        log and on its way to every process); in one process, at once. :meth:`broadcast` itself
        never waits: use this where the caller must know (a form post that says "sent").

        Raises:
            TimeoutError: not accepted within ``timeout`` seconds (Redis unreachable): the
                message is still queued and may be delivered later.
            ~ignitia_sync.exceptions.MessageDropped: the backplane dropped the message (its
                queue full, Redis refused it, the backplane closed, ...): raised as soon as it
                is dropped; it will never be delivered (``reason`` says why).
            ValueError: ``room`` keeps no positions (``history`` None for it), or the message
                is over the Redis backplane's ``max_message_size`` (nothing is delivered).

        Example:
            >>> registry = Registry()
            >>> registry.publish(Message.text("saved"), room="orders").offset
            1
        """
        _check_name("room name", room)
        if type(message) is not Text and type(message) is not Binary:
            raise not_broadcastable(message)
        history = self._positions.history_for(room)
        if history is None:
            raise ValueError(f"room {room[:40]!r} keeps no positions (history is None for it): nothing to wait for")
        if not self._attached:
            self._attach_on_first_use()
        if self._ordered is None:
            hub = self._hub
            if hub is not None and not hub.owns():
                positioned: Position = _wait_in_caller(
                    lambda ack: hub.call_soon(lambda: ack(self._publish_here(message, room, exclude))),
                    timeout, "the registry's hub")
                return positioned
            return self._publish_here(message, room, exclude)
        ordered = self._ordered
        accepted: Position = _wait_in_caller(lambda ack: ordered.publish(message, room, history, exclude, ack),
                                             timeout, "Redis")
        return accepted

    def _deliver(
        self,
        message: Message,
        room: str | None,
        exclude: WebSocketConnection | Iterable[WebSocketConnection] | None = None,
        position: Position | None = None,
    ) -> int:
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
        if position is not None and self._ordered is not None and (self._ordered.seams or self._ordered.floors):
            targets = self._hold_for_seams(targets, room, position, message, exclude)
        if self._wire_members or self._threaded:
            wire = _wire_message(room, position, message) if self._wire_members else None
            return self._deliver_each(targets, skip, message, shared, size, wire)
        count = 0
        for ws in targets:
            if ws in skip:
                continue
            if ws._transport.push_message(message, shared, size):
                count += 1
        return count

    def _hold_for_seams(
        self, targets: list[WebSocketConnection], room: str | None, position: Position, message: Message, exclude: Any
    ) -> list[WebSocketConnection]:
        """Under the order lock: members in the middle of a join get this later, after what they missed;
        members whose join replayed the log beyond this position have it already."""
        assert self._ordered is not None and room is not None
        seams, floors = self._ordered.seams, self._ordered.floors
        kept = []
        for ws in targets:
            held = seams.get((ws, room))
            if held is not None:
                held.append((position, message, exclude))
                continue
            floor = floors.get((ws, room))
            if floor is not None:
                if floor.epoch == position.epoch and position.offset <= floor.offset:
                    if position.offset == floor.offset:
                        del floors[(ws, room)]  # live order caught up with what it replayed
                    continue
                del floors[(ws, room)]
            kept.append(ws)
        return kept

    def _deliver_each(
        self,
        targets: list[WebSocketConnection],
        skip: set[WebSocketConnection] | tuple[()],
        message: Message,
        shared: dict[Any, bytes],
        size: int,
        wire: Message | None,
    ) -> int:
        """Queue to each target in its own thread: here directly, elsewhere through its hub.

        With ``wire``, members of the rooms wire format get that envelope instead (framed
        once); plain connections get ``message``.
        """
        wire_shared: dict[Any, bytes] = {}
        wire_size = 0
        if wire is not None:
            wire_frame = encode_frame(wire)
            wire_shared[None], wire_size = wire_frame, len(wire_frame)
        count = 0
        for ws in targets:
            if ws in skip:
                continue
            if wire is None or ws._resume is None:
                count += ws._transport.push_message_threadsafe(message, shared, size)
            else:
                count += ws._transport.push_message_threadsafe(wire, wire_shared, wire_size)
        return count

    def close_all(self, code: int = 1001, reason: str = "Server shutdown") -> None:
        """Close every open connection (each sends what it has queued first); returns at once.

        Example:
            >>> from ignitia_sync import Router
            >>> from ignitia_sync.testing import TestClient
            >>> with TestClient(Router().websocket("/", lambda ws: [ws.send(m) for m in ws])) as client:
            ...     ws = client.connect("/")
            ...     ws.send_text("here")  # answered: the connection is registered
            ...     _ = ws.recv(timeout=5)
            ...     client.server.registry.close_all(1001, "Server shutdown")
            ...     ws.recv(timeout=5)
            Close(frame=CloseFrame(code=1001, reason='Server shutdown'))
        """
        for ws in self:
            ws._transport.run_in_own_thread(ws.close, code, reason)

    def send_to(self, id: str, message: Message, *, timeout: float | None = None) -> bool:
        """Queue ``message`` to the connection with this id, here or in another process.

        Returns at once, like :meth:`broadcast`. True when it was queued to a local
        connection or handed to the backplane (which delivers at most once); False when
        no process has it (without a backplane: no local connection has that id).

        With ``timeout``, it waits instead (an acknowledgement): for a connection here, until
        its socket took the message (True), or the connection closed (False); in another
        process, until Redis accepted it: True when that process heard it, False when no
        process has the id.

        Raises:
            ValueError: ``id`` is not encodable as UTF-8.
            TimeoutError: with ``timeout``: no answer within it (Redis unreachable, a peer
                that does not read).

        Example:
            >>> Registry().send_to("alice", Message.text("hi"))
            False
        """
        if type(message) is not Text and type(message) is not Binary:
            raise not_broadcastable(message, "sent")
        _check_name("application id", id)
        if not self._attached:
            self._attach_on_first_use()
        if timeout is not None:
            return self._send_to_acked(id, message, timeout)
        hub = self._hub
        if hub is not None and not hub.owns():
            self.call_threadsafe(self.send_to, id, message)  # from another thread: in our hub
            return True
        ws = self._by_id.get(id)
        if ws is None:
            return self.backplane.send_to(id, message)
        return self._push_one(ws, message)

    def _send_to_acked(self, id: str, message: Message, timeout: float) -> bool:
        """:meth:`send_to` that waits: written to the socket here, or accepted by Redis for another process."""
        ws = self._by_id.get(id)
        if ws is not None:
            if ws._resume is not None:
                message = Message.text(encode_direct(message))

            def send(ack: Callable[[bool], None]) -> None:
                def written() -> None:
                    try:
                        ws.send(message)
                        ack(True)
                    except ConnectionClosed:
                        ack(False)

                ws._transport.run_in_own_thread(gevent.spawn, written)  # a greenlet of its own thread: it may block

            return bool(_wait_in_caller(send, timeout, "the peer's socket"))
        acked = getattr(self.backplane, "send_to_acked", None)
        if acked is None:
            return False  # no other process: nobody has the id
        return bool(_wait_in_caller(lambda ack: acked(id, message, ack), timeout, "Redis"))

    def disconnect(self, id: str, code: int = 1008, reason: str = "") -> int:
        """Close every connection of user ``id``, here and in every other process: a revocation.

        A user logs out, changes a password, or is banned:
        ``registry.disconnect(user_id, 1008, "logged out")``. Closed here, at once: every open
        connection whose user (:meth:`set_user`, or ``AuthMiddleware``'s ``AuthInfo``) is
        ``id``, however many, and also the connection identified as ``id`` (:meth:`identify`),
        as before users existed. Each is closed like :meth:`WebSocketConnection.close` (what is
        queued goes first; the handler's ``recv()`` then returns None). With a backplane that
        carries revocations (``RedisBackplane``), every other process closes the same set of
        its own as soon as the message reaches it: also a connection whose id was taken over
        (``identify(..., take_over=True)``) and not yet closed. Returns at once, from any thread.

        What it cannot know: how many connections other processes closed, or whether the
        message reached them. Like every backplane message it is delivered at most once;
        while Redis is unreachable it is dropped and counted in
        ``stats()["backplane"]["dropped"]`` (call it again once Redis is back, or keep a
        revocation list your handlers check). An id no process has closes nothing.

        Args:
            id: the user id (or the application id given with :meth:`identify`).
            code: 1008 (policy violation, the default), 1000, 1001, or 3000-4999.
            reason: at most 123 bytes of UTF-8; the client sees it in the Close frame.

        Returns:
            How many connections of this process it closed (those already closing not counted).

        Raises:
            ValueError: another code, a longer reason, or not a user or application id
                (empty, starting with ``#``, longer than ``MAX_ID_LENGTH``, not encodable).
            TypeError: ``id`` is not a ``str``.

        Example:
            >>> from ignitia_sync import Router
            >>> from ignitia_sync.testing import TestClient
            >>> def chat(ws):
            ...     ws.registry.set_user(ws, "alice")
            ...     ws.send_text("signed in")
            ...     for message in ws:
            ...         pass
            >>> with TestClient(Router().websocket("/chat", chat)) as client:
            ...     tabs = [client.connect("/chat") for _ in range(2)]
            ...     _ = [tab.recv(timeout=5) for tab in tabs]  # both are alice's by now
            ...     print(client.server.registry.disconnect("alice", 1008, "logged out"))
            ...     print([tab.recv(timeout=5) for tab in tabs])
            ...     print(client.server.registry.disconnect("nobody"))
            2
            [Close(frame=CloseFrame(code=1008, reason='logged out')), Close(frame=CloseFrame(code=1008, reason='logged out'))]
            0
        """
        check_revocation_close(code, reason)
        _check_application_id(id)
        if not self._attached:
            self._attach_on_first_use()
        closed = self._close_revoked(id, code, reason)
        revoke = getattr(self.backplane, "disconnect", None)  # a Backplane without it: this process only
        if revoke is not None:
            revoke(id, code, reason)  # never blocks; from another thread, handed to the backplane's hub
        return closed

    def _close_revoked(self, id: str, code: int, reason: str) -> int:
        """Close this process's connections of user ``id`` and the one identified as ``id``; how many were open.

        Each is closed in its own thread (handed over when that is not this one).
        """
        with self._lock:
            revoked = set(self._users.get(id, ()))
            identified = self._by_id.get(id)
            if identified is not None:
                revoked.add(identified)
        closed = 0
        for ws in revoked:
            if ws.state == "open":
                ws._transport.run_in_own_thread(ws.close, code, reason)
                closed += 1
        return closed

    def _push_one(self, ws: WebSocketConnection, message: Message, *, wrap: bool = True) -> bool:
        """Queue ``message`` to ``ws`` alone (in an envelope for the rooms wire format, unless ``wrap`` is False)."""
        if wrap and ws._resume is not None:
            message = Message.text(encode_direct(message))
        frame = encode_frame(message)
        return ws._transport.push_message_threadsafe(message, {None: frame}, len(frame))

    def _receive_remote(self, message: Message, room: str | None) -> None:
        if self._ordered is not None:  # positions come from the backplane: a plain B has none
            self.broadcasts += 1
            self.deliveries += self._deliver(message, room)
        else:
            self._deliver_here(message, room)

    def _receive_direct(self, id: str, message: Message) -> None:
        if type(message) is Close:  # a revocation from another process (the backplane checked its code)
            if message.frame is not None:
                self._close_revoked(id, message.frame.code, message.frame.reason)
            return
        ws = self._by_id.get(id)
        if ws is not None:
            self._push_one(ws, message)

    # -- threads -----------------------------------------------------------------------

    def attach(self, loop: Any = None) -> None:
        """Bind to the current hub and start the backplane; the host does this when it starts.

        ``loop`` is that hub's loop when the caller has it at hand; the OS thread is the caller's.
        A registry that was never attached attaches on its first use (see :meth:`broadcast`).
        """
        with self._lock:  # two first connections in two threads attach once
            if not self._threaded:
                self._hub = HubRef(loop)
            attach, self._attached = not self._attached, True
        if attach:
            if self._ordered is not None:
                self._ordered.attach()
            attach_presence = getattr(self.backplane, "attach_presence", None)
            if self._presence is not None and attach_presence is not None:
                attach_presence(self._presence_event)
            self.backplane.attach(self._receive_remote, self._receive_direct, threaded=self._threaded)

    def _attach_on_first_use(self) -> None:
        """Start in this process on first use: in this thread's hub, or threaded when it has none.

        A thread without a hub is a request thread of a threaded server (a Flask view under
        ``flask run``) or a process that serves no WebSocket itself (a task): its hub would not
        outlive the call, so the backplane runs in a thread of its own (:meth:`serve_from_threads`).
        """
        if get_hub_if_exists() is None:
            self.serve_from_threads()
        else:
            self.attach()

    def _start_afresh(self, backplane: Backplane) -> None:
        """In a child process after a fork: no connection, no hub, not attached; a new backplane.

        The parent's connections, hub and backplane greenlets (or thread) are not this
        process's; the next use attaches here again. Called by the host's fork hook.
        """
        self._rooms_of = {}
        self._rooms = {}
        self._by_id = {}
        self._users = {}
        self._positions = RoomPositions(self._positions._choice)  # the parent's logs were the parent's
        self._order = allocate_real_lock()
        self._wire_members = 0
        self._ordered = OrderedRooms(self, backplane) if isinstance(backplane, PositionedBackplane) else None
        self._presence = PresenceBook() if self._presence is not None else None
        self._presence_events = []
        self._presence_telling = False  # a parent's thread may have been telling at the fork
        self._hub = None
        self._threaded = False
        self._attached = False
        self._lock = allocate_real_lock()  # another thread may have held the parent's at the fork
        self.backplane = backplane

    def serve_from_threads(self) -> None:
        """Connections are served by several OS threads, each in its own hub (a threaded server).

        From then on every method may be called from any thread: deliveries and closes are
        handed to the thread that serves each connection, and :meth:`call_threadsafe` runs
        its function at once in the calling thread. Hosts call this before they add the
        first connection of a threaded WSGI server (Werkzeug's, Django's ``runserver``).

        Example:
            >>> registry = Registry()
            >>> registry.serve_from_threads()
            >>> registry.threaded
            True
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
        """:meth:`broadcast` from any thread (a worker thread of a Flask app, say).

        Raises:
            ValueError: ``room`` is not encodable as UTF-8 (raised here, in the caller's thread).
        """
        if type(message) is not Text and type(message) is not Binary:
            raise not_broadcastable(message)
        if room is not None:
            _check_name("room name", room)
        self.call_threadsafe(self.broadcast, message, room, exclude)


def _wire_message(room: str | None, position: Position | None, message: Message) -> Message:
    """``message`` as a client of the rooms wire format gets it: a room's at its position, or on its own.

    Example:
        >>> _wire_message("lobby", Position("e1", 4), Message.text("hi")).data
        '{"type":"message","room":"lobby","position":{"epoch":"e1","offset":4},"text":"hi"}'
        >>> _wire_message(None, None, Message.text("hi")).data
        '{"type":"message","text":"hi"}'
    """
    if room is not None and position is not None:
        return Message.text(encode_room_message(room, position, message))
    return Message.text(encode_direct(message))



def _wait_in_caller(start: Callable[[Callable[[Any], None]], Any], timeout: float, what: str) -> Any:
    """Run ``start(answer)`` and wait in the calling greenlet (any thread) until ``answer(value)`` is called."""
    answer = Answer[Any]()
    start(answer)
    try:
        value = answer.wait(timeout)
    except gevent.Timeout:
        raise TimeoutError(f"not accepted by {what} within {timeout:g} s (still queued: it may arrive later)") from None
    if isinstance(value, MessageDropped):  # the backplane dropped it: it never will be accepted
        raise value
    return value
