"""The listening socket of a :class:`~ignitia_sync.hosting.server.Server`: accept, and survive EMFILE.

The listener only accepts: each socket goes to the function it was given (the server's
``_handle``), which does everything else. The server owns its life cycle (``start``,
``close``), as gevent's ``pywsgi.WSGIServer`` keeps the listener (``baseserver``) apart from
what serves one connection (``handler_class``).

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
from typing import Any

from gevent.server import StreamServer

from .._support.logs import LogThrottle

__all__ = ["Listener"]

log = logging.getLogger("ignitia_sync.server")  # the server's logger: same lines as before the split


class Listener(StreamServer):
    """gevent's StreamServer; running out of file descriptors is logged and survived.

    With EMFILE (or ENFILE, ENOBUFS, ENOMEM) at accept, accepting pauses for a moment
    instead of spinning on the readable listening socket, with one throttled log line; the
    connections already open are served as before.

    Example:
        >>> listener = Listener(("127.0.0.1", 0), lambda sock, address: sock.close(), backlog=16)
        >>> listener.start()
        >>> listener.server_port > 0
        True
        >>> listener.close()
    """

    _PAUSE = 0.1
    _RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accept_log = LogThrottle(log, burst=1)
        self._pause_timer: Any = None

    def do_read(self) -> Any:
        """Accept one socket; on a lack of descriptors or memory, pause accepting for a moment."""
        try:
            return super().do_read()
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

    def _accept_again(self) -> None:
        if not self.closed:
            self.start_accepting()

    def close(self) -> None:
        """Stop accepting for good and close the listening socket (and a pending pause)."""
        if self._pause_timer is not None:
            self._pause_timer.close()
            self._pause_timer = None
        super().close()
