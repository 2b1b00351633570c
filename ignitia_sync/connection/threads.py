"""Calls across OS threads: one handle on a hub, and the real (unpatched) thread primitives.

A connection, a registry and a backplane each live in the hub of one OS thread. Code in
another thread (a Flask view under a threaded server, a Celery task, ``Server.stop()``
from the main thread) reaches them only through a :class:`HubRef`: ``owns()`` says whether
the caller is that thread, ``call_soon()`` runs a non-blocking callback there,
``spawn_soon()`` runs a function that may block in a new greenlet there; a connection, which
keeps only its loop, uses :func:`call_soon`. Failures of a
handed-over call are logged, never lost.

Example:
    >>> hub = HubRef()
    >>> hub.owns()
    True
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import gevent
import gevent.event
from gevent.monkey import get_original

__all__ = ["Answer", "HubRef", "allocate_real_lock", "call_soon", "real_get_ident"]

T = TypeVar("T")

log = logging.getLogger("ignitia_sync.connection")

#: The OS thread's id, even under monkey-patching (where ``threading.get_ident`` names a greenlet).
real_get_ident: Callable[[], int] = get_original("_thread", "get_ident")
#: A real lock (not gevent's): for a few operations between OS threads, never held across a switch.
allocate_real_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")


class HubRef:
    """The hub of the OS thread that made it (or of ``loop``): who owns it, and a way in.

    Example:
        >>> import gevent
        >>> ran = []
        >>> hub = HubRef()
        >>> hub.call_soon(ran.append, "in that hub, as a callback")
        True
        >>> gevent.sleep(0)
        >>> ran
        ['in that hub, as a callback']
    """

    __slots__ = ("loop", "thread")

    def __init__(self, loop: Any = None) -> None:
        #: The event loop of that hub.
        self.loop: Any = loop if loop is not None else gevent.get_hub().loop
        #: The OS thread that runs it.
        self.thread = real_get_ident()

    def owns(self) -> bool:
        """True when called from the OS thread of this hub."""
        return self.thread == real_get_ident()

    def call_soon(self, func: Callable[..., Any], *args: Any) -> bool:
        """Run ``func(*args)`` soon as a callback of this hub, from any thread; it must not block.

        Returns False when the hub is gone (its thread ended and destroyed its loop).
        """
        return call_soon(self.loop, func, *args)

    def spawn_soon(self, func: Callable[..., Any], *args: Any) -> bool:
        """Run ``func(*args)`` soon in a new greenlet of this hub (it may block), from any thread."""
        return self.call_soon(gevent.spawn, _run_logged, func, args)


class Answer(Generic[T]):
    """A value that another hub (or OS thread) hands back to the greenlet that waits for it.

    Made by the waiting greenlet; called with the value from anywhere; :meth:`wait` returns it.

    Example:
        >>> answer = Answer[int]()
        >>> HubRef().spawn_soon(answer, 42)
        True
        >>> answer.wait(timeout=5)
        42
    """

    __slots__ = ("_caller", "_result")

    def __init__(self) -> None:
        self._result: gevent.event.AsyncResult[T] = gevent.event.AsyncResult()
        self._caller = HubRef()  # the value comes back in the waiter's own hub, whatever thread calls

    def __call__(self, value: T) -> None:
        if self._caller.owns():
            self._result.set(value)
        else:
            self._caller.call_soon(self._result.set, value)

    def ready(self) -> bool:
        """True once the value has come."""
        return self._result.ready()

    def wait(self, timeout: float | None = None) -> T:
        """The value, once it comes.

        Raises:
            gevent.Timeout: not within ``timeout`` seconds.
        """
        value = self._result.get(timeout=timeout)
        return value  # type: ignore[return-value]  # set with a T, never with None


def call_soon(loop: Any, func: Callable[..., Any], *args: Any) -> bool:
    """:meth:`HubRef.call_soon` for a bare event loop (what a connection keeps: no object more per peer).

    Example:
        >>> import gevent
        >>> call_soon(gevent.get_hub().loop, print, "hi")
        True
        >>> gevent.sleep(0)
        hi
    """
    try:
        loop.run_callback_threadsafe(_run_logged, func, args)
    except ValueError:  # the loop was destroyed
        return False
    return True


def _run_logged(func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        func(*args)
    except Exception:
        log.exception("call handed over from another thread failed: %r", func)
