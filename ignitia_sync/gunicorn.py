"""A gunicorn worker that closes every WebSocket with 1001 when it stops: ``-k ignitia_sync.gunicorn.Worker``.

gunicorn's gevent worker waits ``graceful_timeout`` for requests to end on SIGTERM, HUP
(reload) or a max-requests restart, then kills them: a WebSocket, a request that lasts
for hours, would be cut with no Close frame (clients see 1006). This worker, on the same
signals, first closes every WebSocket of every :class:`~ignitia_sync.wsgi.WebSocketHost` (a WSGI middleware, Flask's ``Sock``)
in the process with 1001 "Server shutdown" (queued messages first), then stops as gunicorn does.

Example::

    gunicorn -k ignitia_sync.gunicorn.Worker -w 4 --worker-connections 10000 myapp:app
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.ggevent import GeventWorker

from .wsgi import shutdown_all

__all__ = ["Worker"]


class Worker(GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker, closing WebSockets with 1001 before it stops."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: close WebSockets (1001), then gunicorn's graceful stop."""
        shutdown_all()
        super().handle_exit(sig, frame)

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGINT/SIGQUIT: the same, then gunicorn's quick stop."""
        shutdown_all()
        super().handle_quit(sig, frame)
