"""The Redis backplane's link state: one :class:`LinkState`, changed only through :data:`TRANSITIONS`.

All of a backplane's link state lives here. A :class:`~ignitia_sync.redis.RedisBackplane`
has two connections to Redis, each owned by its own greenlet: the listener's (subscribed to
the backplane's channels) and the publisher's. What the backplane does with a local publish
depends on both, and on their history:

* before either has failed, a publish waits in the queue for the link (a process starting);
* once one has failed, publishes are dropped (and counted) until both are back;
* the link is *up* (``stats()["up"]``, ``on_backplane_up``) only while both are;
* after ``close()`` nothing changes it any more.

These facts used to be five booleans, which allowed combinations no run can reach (up and
down at once, closed and up). Here each reachable combination is one member of
:class:`LinkState`, and each change is a :class:`LinkEvent` looked up in :data:`TRANSITIONS`
by :func:`transition`; an event the table does not list for a state is a bug and raises.
The owner of the state (the backplane's hub) calls :func:`transition`; this module does no
I/O and keeps no state of its own.

Example:
    >>> state = LinkState.CONNECTING
    >>> state = transition(state, LinkEvent.LISTENER_UP)
    >>> state.name, state.up, state.listening
    ('CONNECTING_LISTENING', False, True)
    >>> state = transition(state, LinkEvent.PUBLISHER_UP)
    >>> state.name, state.up
    ('UP', True)
    >>> transition(state, LinkEvent.LISTENER_LOST).drops
    True
    >>> transition(state, LinkEvent.LISTENER_UP)
    Traceback (most recent call last):
    ...
    RuntimeError: impossible backplane link transition: LISTENER_UP in UP
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "LinkEvent", "LinkState", "transition"]


class LinkState(enum.Enum):
    """Where a backplane's link to Redis stands: which connection is up, and whether one failed."""

    #: Neither connection is up yet and none has failed (a process starting): publishes queue.
    CONNECTING = "connecting"
    #: Starting; the listener is subscribed, the publisher not connected yet: publishes queue.
    CONNECTING_LISTENING = "connecting, listening"
    #: Starting; the publisher is connected, the listener not subscribed yet: publishes queue.
    CONNECTING_PUBLISHING = "connecting, publishing"
    #: Both connections are up: traffic flows.
    UP = "up"
    #: A connection failed and neither is back: publishes are dropped.
    DOWN = "down"
    #: Down; the listener is subscribed again, the publisher not yet: publishes are dropped.
    DOWN_LISTENING = "down, listening"
    #: Down; the publisher is connected again, the listener not yet: publishes are dropped.
    DOWN_PUBLISHING = "down, publishing"
    #: ``close()`` was called: publishes are dropped, the loops end; nothing changes it any more.
    CLOSED = "closed"

    @property
    def up(self) -> bool:
        """Both connections are up (``stats()["up"]``)."""
        return self is LinkState.UP

    @property
    def drops(self) -> bool:
        """A connection failed and the link is not back: a publish is dropped, not queued."""
        return self in _DOWN

    @property
    def listening(self) -> bool:
        """The listener is subscribed (to this process's own channel too): ids may enter the directory."""
        return self in _LISTENING

    @property
    def publishing(self) -> bool:
        """The publisher is connected."""
        return self in _PUBLISHING


class LinkEvent(enum.Enum):
    """What the backplane's greenlets report, and ``close()``."""

    #: The listener (every shard's) is subscribed.
    LISTENER_UP = "listener up"
    #: The listener failed (or could not connect); it reconnects after a pause.
    LISTENER_LOST = "listener lost"
    #: The publisher connected (and its ping was answered).
    PUBLISHER_UP = "publisher up"
    #: The publisher failed (or could not connect); it reconnects after a pause.
    PUBLISHER_LOST = "publisher lost"
    #: ``close()``.
    CLOSE = "close"


_S, _E = LinkState, LinkEvent
_DOWN = frozenset({_S.DOWN, _S.DOWN_LISTENING, _S.DOWN_PUBLISHING})
_LISTENING = frozenset({_S.CONNECTING_LISTENING, _S.UP, _S.DOWN_LISTENING})
_PUBLISHING = frozenset({_S.CONNECTING_PUBLISHING, _S.UP, _S.DOWN_PUBLISHING})

#: Every allowed change: ``TRANSITIONS[state][event]`` is the next state. A connection reports
#: "lost" whether it had come up or failed to (so LOST is allowed in every state), but "up"
#: only after a "lost" or at the start (so UP is missing where that connection is up already).
TRANSITIONS: dict[LinkState, dict[LinkEvent, LinkState]] = {
    _S.CONNECTING: {
        _E.LISTENER_UP: _S.CONNECTING_LISTENING,
        _E.PUBLISHER_UP: _S.CONNECTING_PUBLISHING,
        _E.LISTENER_LOST: _S.DOWN,
        _E.PUBLISHER_LOST: _S.DOWN,
        _E.CLOSE: _S.CLOSED,
    },
    _S.CONNECTING_LISTENING: {
        _E.PUBLISHER_UP: _S.UP,
        _E.LISTENER_LOST: _S.DOWN,
        _E.PUBLISHER_LOST: _S.DOWN_LISTENING,
        _E.CLOSE: _S.CLOSED,
    },
    _S.CONNECTING_PUBLISHING: {
        _E.LISTENER_UP: _S.UP,
        _E.LISTENER_LOST: _S.DOWN_PUBLISHING,
        _E.PUBLISHER_LOST: _S.DOWN,
        _E.CLOSE: _S.CLOSED,
    },
    _S.UP: {
        _E.LISTENER_LOST: _S.DOWN_PUBLISHING,
        _E.PUBLISHER_LOST: _S.DOWN_LISTENING,
        _E.CLOSE: _S.CLOSED,
    },
    _S.DOWN: {
        _E.LISTENER_UP: _S.DOWN_LISTENING,
        _E.PUBLISHER_UP: _S.DOWN_PUBLISHING,
        _E.LISTENER_LOST: _S.DOWN,
        _E.PUBLISHER_LOST: _S.DOWN,
        _E.CLOSE: _S.CLOSED,
    },
    _S.DOWN_LISTENING: {
        _E.PUBLISHER_UP: _S.UP,
        _E.LISTENER_LOST: _S.DOWN,
        _E.PUBLISHER_LOST: _S.DOWN_LISTENING,
        _E.CLOSE: _S.CLOSED,
    },
    _S.DOWN_PUBLISHING: {
        _E.LISTENER_UP: _S.UP,
        _E.LISTENER_LOST: _S.DOWN_PUBLISHING,
        _E.PUBLISHER_LOST: _S.DOWN,
        _E.CLOSE: _S.CLOSED,
    },
    # The end: the publisher may still connect or fail while it sends what came before
    # close(); that changes nothing.
    _S.CLOSED: dict.fromkeys(_E, _S.CLOSED),
}


def transition(state: LinkState, event: LinkEvent) -> LinkState:
    """The state after ``event`` in ``state``.

    Raises:
        RuntimeError: :data:`TRANSITIONS` does not allow ``event`` in ``state`` (a bug).

    Example:
        >>> transition(LinkState.UP, LinkEvent.CLOSE)
        <LinkState.CLOSED: 'closed'>
    """
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise RuntimeError(f"impossible backplane link transition: {event.name} in {state.name}") from None
