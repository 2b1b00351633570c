"""The listening socket of a :class:`~ignitia_sync.hosting.server.Server`: accept, and survive EMFILE.

The listener only accepts: each socket goes to the function it was given (the server's
``_handle``), which does everything else. The server owns its life cycle (``start``,
``close``), as gevent's ``pywsgi.WSGIServer`` keeps the listener (``baseserver``) apart from
what serves one connection (``handler_class``). The server may also hold it: while ``full``
says so, nothing is accepted and new connections wait in the kernel's listen backlog, until
:meth:`Listener.resume` (gevent's own pool limit, and gunicorn's ``worker_connections``, work
the same way); and ``admit`` counts each socket the moment it is accepted.

Example:
    >>> import gevent.event, gevent.socket
    >>> accepted = gevent.event.Event()
    >>> def handle(sock, address):
    ...     sock.close()
    ...     accepted.set()
    >>> listener = Listener(("127.0.0.1", 0), handle)
    >>> listener.start()
    >>> client = gevent.socket.create_connection(("127.0.0.1", listener.server_port))
    >>> accepted.wait(5)
    True
    >>> client.close()
    >>> listener.close()
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from typing import Any

from gevent.server import StreamServer

from .._support.logs import LogThrottle

__all__ = ["Listener"]

log = logging.getLogger("ignitia_sync.server")  # the server's logger: same lines as before the split


class Listener(StreamServer):
    """gevent's StreamServer; it can be held at a cap, and running out of file descriptors is survived.

    With EMFILE (or ENFILE, ENOBUFS, ENOMEM) at accept, accepting pauses for a moment
    instead of spinning on the readable listening socket, with one throttled log line; the
    connections already open are served as before.

    Args:
        *args: gevent's ``StreamServer`` arguments: the address (or a listening socket) and
            the function each accepted socket is handed to, in a new greenlet.
        full: asked before each accept; while it returns True the listener is *held*: it
            stops accepting (the kernel's backlog queues new connections) until
            :meth:`resume`.
        admit: called with each accepted ``(sock, address)`` in the accepting loop, before the
            handler's greenlet is spawned; what it returns is passed to that handler as a
            third argument.
        **kwargs: gevent's ``StreamServer`` keyword arguments (``backlog``).

    Example:
        >>> listener = Listener(("127.0.0.1", 0), lambda sock, address: sock.close(), backlog=16)
        >>> listener.start()
        >>> listener.server_port > 0
        True
        >>> listener.close()
    """

    _PAUSE = 0.1
    _RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

    def __init__(
        self,
        *args: Any,
        full: Callable[[], bool] | None = None,
        admit: Callable[[Any, Any], object] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._accept_log = LogThrottle(log, burst=1)
        self._pause_timer: Any = None
        self._full = full
        self._admit = admit
        self._held = False

    @property
    def held(self) -> bool:
        """True while ``full`` holds the listener (until :meth:`resume`)."""
        return self._held

    def full(self) -> bool:
        """Asked by gevent's accepting loop before each accept: True stops accepting (held)."""
        if self._full is not None and self._full():
            self._held = True
            return True
        return False

    def resume(self) -> None:
        """Accept again after ``full`` held the listener; a no-op unless held.

        While accepting is paused for a lack of descriptors, it starts again only when that
        pause ends; ``full`` is asked again before the next accept.

        Example:
            >>> import gevent, gevent.socket
            >>> at_cap, accepted = [True], []
            >>> def handle(sock, address):
            ...     accepted.append(address)
            ...     sock.close()
            >>> listener = Listener(("127.0.0.1", 0), handle, full=lambda: at_cap[0])
            >>> listener.start()
            >>> client = gevent.socket.create_connection(("127.0.0.1", listener.server_port))
            >>> gevent.sleep(0.1)  # connected: it waits in the kernel's backlog
            >>> listener.held, accepted
            (True, [])
            >>> at_cap[0] = False
            >>> listener.resume()
            >>> gevent.sleep(0.1)
            >>> listener.held, len(accepted)
            (False, 1)
            >>> client.close()
            >>> listener.close()
        """
        if not self._held:
            return
        self._held = False
        if self._pause_timer is None and not self.closed:
            self.start_accepting()

    def do_read(self) -> Any:
        """Accept one socket (admitted); on a lack of descriptors or memory, pause accepting for a moment."""
        try:
            accepted = super().do_read()
        except OSError as exc:
            if exc.errno not in self._RESOURCE_ERRORS:
                raise
            self._accept_log.log("cannot accept: %s; accepting again in %.1fs", os.strerror(exc.errno), self._PAUSE)
            self.stop_accepting()
            if self._pause_timer is not None:
                self._pause_timer.close()
            self._pause_timer = self.loop.timer(self._PAUSE)
            self._pause_timer.start(self._accept_again)
            return None
        if accepted and self._admit is not None:
            sock, address = accepted
            return sock, address, self._admit(sock, address)
        return accepted

    def _accept_again(self) -> None:
        if self._pause_timer is not None:
            self._pause_timer.close()
            self._pause_timer = None
        if not self.closed and not self._held:
            self.start_accepting()

    def close(self) -> None:
        """Stop accepting for good and close the listening socket (and a pending pause)."""
        if self._pause_timer is not None:
            self._pause_timer.close()
            self._pause_timer = None
        super().close()
