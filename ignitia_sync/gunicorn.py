"""A gunicorn worker that closes every WebSocket with 1001 when it stops: ``-k ignitia_sync.gunicorn.Worker``.

gunicorn's gevent worker waits ``graceful_timeout`` for requests to end on SIGTERM, HUP
(reload) or a max-requests restart, then kills them: a WebSocket, a request that lasts
for hours, would be cut with no Close frame (clients see 1006); on SIGQUIT/SIGINT, or when
its master dies, it exits at once. This worker drains first, however it ends, then stops
as gunicorn does:

* **the drain**: every WebSocket of every :class:`~ignitia_sync.wsgi.WebSocketHost` (a WSGI
  middleware, Flask's ``Sock``, Django's views) in the process gets its queued messages, then
  1001 "Server shutdown"; upgrades meanwhile get 503 with ``Retry-After: 1``. It runs in a
  greenlet of its own, never in a signal handler, and lasts until the last of those
  connections has closed (each within its ``close_timeout``), at most ``--graceful-timeout``.
* **when**: as soon as the worker stops being alive, whatever said so: SIGTERM (a stop, a
  reload through HUP, fewer workers), a ``--max-requests`` restart, SIGQUIT or SIGINT (the
  quick stop: the worker exits once the drain is over, without waiting for HTTP requests),
  SIGABRT (the master's ``--timeout``: gunicorn's ``worker_abort`` hook still runs in the
  signal handler, so that a stack dump shows what blocked the hub; the drain can only run
  once the hub runs again, before the master's SIGKILL), and the death of the master; a
  worker still booting (before its own signal handlers) when its master is stopped too.

Each worker also starts its hosts' backplanes when it has loaded the app (after the fork,
in its own hub, with ``--preload`` too), so that a worker serving only HTTP publishes what
its views broadcast at once.

Example::

    gunicorn -k ignitia_sync.gunicorn.Worker -w 4 --worker-connections 10000 --graceful-timeout 30 myapp:app
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from ._support.deadline import Deadline
from ._support.extras import needs
from .broadcast.backplane import LocalBackplane
from .hosting.host import hosts
from .wsgi import shutdown_all

# gunicorn's gevent worker imports packaging, which only gunicorn[gevent] installs
with needs("ignitia_sync.gunicorn", "gunicorn and packaging", extra="gunicorn", packages=("gunicorn", "packaging")):
    from gunicorn.workers.base import Worker as BaseWorker
    from gunicorn.workers.ggevent import GeventWorker

__all__ = ["Worker"]


#: The signals that a worker handles and an arbiter sends its workers (stop, quick stop, reopen logs).
_REPLAYED = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1})


def _queued_for_the_arbiter(handler: object) -> list[int]:
    """Take what this process's copy of the arbiter's signal queue holds (``handler``: its handler).

    A forked worker inherits gunicorn's ``Arbiter.signal`` as its handler until it installs its
    own: that queues the signal on ``Arbiter.SIG_QUEUE`` (a ``SimpleQueue`` in current gunicorn,
    a list in older ones). Anything else (a handler not gunicorn's, no queue) gives nothing.

    Example::

        _queued_for_the_arbiter(signal.getsignal(signal.SIGTERM))  # [15]: a SIGTERM came early
    """
    queued: Any = getattr(getattr(handler, "__self__", None), "SIG_QUEUE", None)
    taken: list[int] = []
    if isinstance(queued, list):
        taken = [sig for sig in queued if isinstance(sig, int)]
        queued.clear()
        return taken
    # The arbiter's queue.SimpleQueue, made before gevent's monkey-patching: not the class
    # that `queue` names in this worker now. Nothing else takes from it in this process.
    while callable(getattr(queued, "empty", None)) and not queued.empty():
        sig = queued.get_nowait()
        if isinstance(sig, int):
            taken.append(sig)
    return taken


class _OneAccessLine:
    """gunicorn's logger without its access line for a served WebSocket: ours is the one.

    Django's view answers a served upgrade with a 101 that gunicorn logs (``--access-logfile``)
    besides our ``ignitia_sync.access`` line; everything else goes to gunicorn's logger.

    Example::

        worker.log = _OneAccessLine(worker.log)
    """

    def __init__(self, log: Any) -> None:
        self._log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if getattr(resp, "status_code", None) != 101:
            self._log.access(resp, req, environ, request_time)


class Worker(GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker; every way it stops drains its WebSockets first (1001).

    gunicorn marks a stopping worker by setting ``alive`` to False: in its signal handlers,
    after the request that reaches ``max_requests``, when its reloader sees a change. This
    worker starts the drain right there (in a new greenlet), so that every path drains the
    same way; the worker's own loop then closes its listeners and waits for its requests,
    at most ``--graceful-timeout``, as gunicorn's gevent worker does.
    """

    #: Set when the drain is over (every WebSocket closed, or ``--graceful-timeout``).
    _drained: gevent.event.Event | None = None

    @property
    def alive(self) -> bool:
        """gunicorn's flag: False once the worker is stopping (setting it so starts the drain)."""
        return bool(self.__dict__.get("_alive", True))

    @alive.setter
    def alive(self, value: bool) -> None:
        self.__dict__["_alive"] = value
        if not value and self._drained is None:
            # Often in a signal handler: only spawn here (as gunicorn's gevent worker does).
            self._drained = gevent.event.Event()
            gevent.spawn(self._drain)

    def _drain(self) -> None:
        """1001 to every WebSocket (queued messages first); wait until each has closed."""
        assert self._drained is not None
        try:
            shutdown_all()
            deadline = Deadline(self.cfg.graceful_timeout)
            while not deadline.expired and not all(
                host.drained for host in hosts() if host.ends_with_process
            ):
                gevent.sleep(0.05)
        finally:
            self._drained.set()

    def _exit_after_drain(self, then: Callable[..., Any], *args: Any) -> None:
        assert self._drained is not None
        self._drained.wait()
        then(*args)

    def load_wsgi(self) -> None:
        """Load the app, then start its hosts' backplanes in this worker (after the fork, in its hub)."""
        super().load_wsgi()
        log: Any = self.__dict__.get("log")  # gunicorn's Logger, set in Worker.__init__
        if log is not None and not isinstance(log, _OneAccessLine):
            self.__dict__["log"] = _OneAccessLine(log)
        for host in hosts():
            if host.ends_with_process and not host.registry._attached:
                host.registry.attach()
        self._warn_without_backplane()

    def _warn_without_backplane(self) -> None:
        """Several workers and a host without a backplane: rooms and send_to stop at the worker."""
        if self.cfg.workers <= 1 or self.age != 1:  # the first worker speaks for all of them
            return
        for host in hosts():
            if host.ends_with_process and isinstance(host.registry.backplane, LocalBackplane):
                self.log.warning(
                    "%d workers and no backplane: rooms, broadcasts and send_to reach only the connections of "
                    "the same worker; set IGNITIA_SYNC_BACKPLANE (or backplane=) to a Redis URL, or run -w 1",
                    self.cfg.workers,
                )
                return

    def init_signals(self) -> None:
        """gunicorn's handlers, then the stop signals that reached the arbiter's handlers before them.

        From the fork until this point (``post_fork``, ``init_process``' first steps) the worker
        still has the handlers it inherited from the arbiter, which only queue a signal for the
        arbiter's loop: a SIGTERM from an arbiter stopping meanwhile lands in this process's copy
        of that queue, which nobody reads, and the worker would boot and serve until the
        arbiter's SIGKILL at the end of ``--graceful-timeout``. Once gunicorn's handlers are in
        place, each such signal is sent again to this process, so that it stops as usual.
        """
        inherited = signal.getsignal(signal.SIGTERM)
        super().init_signals()
        for sig in _queued_for_the_arbiter(inherited):
            if sig in _REPLAYED:
                os.kill(os.getpid(), sig)

    def notify(self) -> None:
        """The heartbeat; once the master has died, drain and stop (gunicorn's own worker exits at once)."""
        BaseWorker.notify(self)
        if self.ppid != os.getppid() and self.alive:
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGQUIT/SIGINT, gunicorn's quick stop: drain, then exit (``worker_int`` runs then)."""
        self.alive = False
        gevent.spawn(self._exit_after_drain, BaseWorker.handle_quit, self, sig, frame)

    def handle_abort(self, sig: int, frame: Any) -> None:
        """SIGABRT (the master's ``--timeout``): ``worker_abort`` here, then drain and exit with 1."""
        self.alive = False
        self.cfg.worker_abort(self)  # in the handler, as gunicorn: a stack dump shows the stuck greenlet
        gevent.spawn(self._exit_after_drain, sys.exit, 1)
