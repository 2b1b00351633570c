"""The bounded inbox between a connection's reader and the greenlet that calls ``recv()``.

Data messages count against ``max_queue``; when it is reached the reader stops reading,
so TCP backpressure reaches the peer. Pings and pongs do not count (a handler that never
reads must not stall keepalive): only the last few of them are kept. One greenlet at a
time may wait; the reader wakes it directly, once per read.

Example:
    >>> inbox = Inbox(max_queue=2, on_room=lambda: None)
    >>> inbox.put(Text("a")); inbox.put(Ping(b"")); inbox.put(Text("b"))
    >>> inbox.full(), inbox.get(None)
    (True, Text(data='a'))
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent import getcurrent
from gevent.hub import Waiter

from ..message import Binary, Ping, Pong, Text

__all__ = ["EOF", "FAILED", "SHUTDOWN", "TIMEOUT", "Inbox"]

#: Put by the transport after the last message: ``recv()`` returns None from then on.
EOF: Any = object()
#: Put after the messages that came before a bad frame: the handler has caught up.
FAILED: Any = object()
#: What :meth:`Inbox.get` returns when its timeout passes first.
TIMEOUT: Any = object()
#: What :meth:`Inbox.get` returns when the host's shutdown event is set first.
SHUTDOWN: Any = object()
#: Pings and pongs kept for a handler that does not read; older ones are dropped.
MAX_CONTROL = 4


class Inbox:
    """Received messages, in order, for one reading greenlet at a time.

    Args:
        max_queue: data messages held before :meth:`full` says so.
        on_room: called when :meth:`get` takes the inbox from full to not full.
    """

    __slots__ = ("_control", "_data", "_detached", "_hub", "_items", "_max_queue", "_on_room", "_waiter", "reader")

    def __init__(self, max_queue: int, on_room: Callable[[], None]) -> None:
        self._max_queue = max_queue
        self._on_room = on_room
        # Made on first use: an empty deque takes ~760 bytes and many connections only listen.
        self._items: deque[Any] | None = None
        self._waiter: Waiter[Any] | None = None
        self._hub: Any = None  # the hub of the thread that reads (one thread per connection)
        self._data = 0
        self._control = 0
        self._detached = False
        #: The greenlet that last waited in :meth:`get` (the handler, once it has read):
        #: what it sends while messages wait here may leave with its next replies.
        self.reader: Any = None

    def put(self, item: Any) -> None:
        """Add a message (or a marker); the waiting greenlet is not woken (see :meth:`wake`)."""
        if self._detached:
            return
        items = self._items
        if items is None:
            items = self._items = deque()
        kind = type(item)
        if kind is Text or kind is Binary:
            self._data += 1
        elif kind is Ping or kind is Pong:
            if self._control >= MAX_CONTROL:
                for index, old in enumerate(items):
                    if type(old) is Ping or type(old) is Pong:
                        del items[index]
                        break
            else:
                self._control += 1
        items.append(item)

    def take_waiter(self) -> Waiter[Any] | None:
        """Take the waiting greenlet's waiter (the reader wakes it once after a whole read)."""
        waiter, self._waiter = self._waiter, None
        return waiter

    def wake(self, waiter: Waiter[Any] | None) -> None:
        """In the hub: switch to ``waiter`` if there is something for it, else keep it waiting."""
        if waiter is None:
            return
        if self._items:
            waiter.switch(None)
        else:
            self._waiter = waiter

    def wake_soon(self) -> None:
        """Wake the waiting greenlet from the hub's next turn (callable from any greenlet)."""
        waiter = self._waiter
        if waiter is not None and self._items:
            self._waiter = None
            gevent.get_hub().loop.run_callback(waiter.switch, None)

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def pending(self) -> bool:
        """True when something waits to be read."""
        return bool(self._items)

    def full(self) -> bool:
        """True when ``max_queue`` data messages wait to be read."""
        return self._data >= self._max_queue

    def detach(self) -> None:
        """The handler is gone: drop what is queued and accept nothing more."""
        self._detached = True
        self.reader = None
        self._items = None
        self._data = self._control = 0

    def get(self, timeout: float | None, shutdown: Any = None) -> Any:
        """The next item; waits at most ``timeout`` seconds (then :data:`TIMEOUT`).

        With a ``shutdown`` event, the wait also ends (with :data:`SHUTDOWN`) once it is set.
        """
        items = self._items
        if not items:
            if self._waiter is not None:
                raise RuntimeError("another greenlet is already waiting in recv() on this connection")
            if shutdown is not None and shutdown.is_set():
                return SHUTDOWN
            # Waiting here, not in a helper: each call level is stack that gevent saves
            # while the greenlet waits (most connections spend their life right here).
            hub = self._hub
            if hub is None:
                hub = self._hub = gevent.get_hub()
            waiter: Waiter[Any] = Waiter(hub)
            self._waiter = waiter
            self.reader = getcurrent()
            timer = None
            if timeout is not None:
                timer = hub.loop.timer(max(0.0, timeout))
                timer.start(waiter.switch, TIMEOUT)
            if shutdown is not None:
                shutdown.rawlink(self._on_shutdown)
            try:
                woken = waiter.get()
            finally:
                if self._waiter is waiter:
                    self._waiter = None
                if timer is not None:
                    timer.close()
                if shutdown is not None:
                    shutdown.unlink(self._on_shutdown)
            items = self._items
            if not items:
                return woken
        item = items.popleft()
        kind = type(item)
        if kind is Text or kind is Binary:
            self._data -= 1
            if self._data == self._max_queue - 1:
                self._on_room()
        elif kind is Ping or kind is Pong:
            self._control -= 1
        return item

    def _on_shutdown(self, _event: Any) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.switch(SHUTDOWN)
