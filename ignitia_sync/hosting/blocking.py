"""One warning when a handler blocks the event loop, naming its route and what to do.

Every connection of a gevent host shares one thread: a handler that blocks it (an
unpatched ``time.sleep``, a C database driver, a long computation) freezes every other
connection. :class:`BlockingWatch` notices it without slowing the loop down: a hub timer
beats every ``threshold / 4`` seconds, and a real thread checks the beat; when it is late
by more than ``threshold``, the thread reads the blocked thread's stack
(``sys._current_frames``), finds the route being served and the innermost line of
application code, and logs one warning per episode. When the program is not
monkey-patched, the warning says so: that is the usual cause.

Hosts call :func:`watch_this_hub` when they know the hub that serves them (the server at
``start()``, a WSGI host at its first upgrade under gunicorn or pywsgi); the threshold is
their ``blocking_warning`` setting (None: no watch). Under a threaded development server each
connection has a thread of its own, so nothing is watched there.

Example::

    watch = watch_this_hub(1.0)   # in the hub to watch
    ...
    watch.stop()
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
import time
import weakref
from types import FrameType
from typing import Any

import gevent
import gevent.monkey

from .._support.logs import escape_for_log
from ..connection.threads import real_get_ident

__all__ = ["BlockingWatch", "blocking_totals", "watch_this_hub"]

log = logging.getLogger("ignitia_sync.server")

_real_sleep = gevent.monkey.get_original("time", "sleep")
_start_thread = gevent.monkey.get_original("_thread", "start_new_thread")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_GEVENT = os.path.dirname(os.path.abspath(gevent.__file__))
_STDLIB = os.path.abspath(sysconfig.get_paths()["stdlib"])


class BlockingWatch:
    """Watches one hub; logs one warning per episode in which it was blocked over ``threshold`` s.

    Args:
        threshold: seconds the loop may be held before a warning (a host's ``blocking_warning``).

    Example:
        >>> BlockingWatch(threshold=0.5).threshold
        0.5
    """

    def __init__(self, threshold: float) -> None:
        if threshold <= 0:
            raise ValueError("threshold must be positive")
        self.threshold = threshold
        self._beat = time.monotonic()
        self._timer: Any = None
        self._thread_id = 0
        self._hub: weakref.ref[Any] | None = None  # the hub watched, once started
        self._running = False
        self._users = 0  # hosts that asked for this hub's watch (watch_this_hub) and have not released it
        #: Episodes warned about so far.
        self.warnings = 0

    def start(self, loop: Any = None) -> None:
        """Beat in this thread's hub (or ``loop``) and watch it from a thread of our own."""
        if self._running:
            return
        self._running = True
        self._thread_id = real_get_ident()
        self._hub = weakref.ref(gevent.get_hub())
        self._beat = time.monotonic()
        interval = self.threshold / 4
        self._timer = (loop if loop is not None else gevent.get_hub().loop).timer(interval, interval)
        self._timer.start(self._on_beat)
        _start_thread(self._watch, ())

    def release(self) -> None:
        """One host no longer needs the watch; the last one stops it."""
        self._users -= 1
        if self._users <= 0:
            self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    def stop(self) -> None:
        """Stop beating and watching; idempotent (also once the hub's loop is gone)."""
        self._running = False
        if self._timer is not None:
            timer, self._timer = self._timer, None
            try:
                timer.close()
            except ValueError:  # the loop was destroyed with its thread: nothing beats any more
                pass

    def _on_beat(self) -> None:
        self._beat = time.monotonic()

    def _watch(self) -> None:
        warned = False
        longest = 0.0
        while self._running:
            _real_sleep(self.threshold / 2)
            hub = self._hub() if self._hub is not None else None
            if hub is None or getattr(hub, "loop", None) is None:  # the hub went with its thread
                self._running = False
                break
            late = time.monotonic() - self._beat
            if late <= self.threshold:
                if warned:  # the episode is over: it lasted at least as long as last seen
                    _totals[1] += longest
                warned = False
            elif not warned and self._running:
                warned = True
                longest = late
                self.warnings += 1
                _totals[0] += 1
                self._warn(late)
            else:
                longest = max(longest, late)

    def _warn(self, late: float) -> None:
        frame = sys._current_frames().get(self._thread_id)
        route, where = _route_and_line(frame)
        what = f"the handler of route {route!r}" if route else "something"
        advice = (
            "this program is not monkey-patched: call gevent.monkey.patch_all() before other imports "
            "(the ignitia-sync command and gunicorn -k gevent do), or use gevent.sleep and cooperative libraries"
            if not gevent.monkey.is_module_patched("time")
            else "use a cooperative library, or move the work to a thread pool (gevent.get_hub().threadpool)"
        )
        log.warning(
            "%s has blocked the event loop for %.1fs%s: every other connection waits; %s",
            what, late, f" (at {where})" if where else "", advice,
        )


def _route_and_line(frame: FrameType | None) -> tuple[str, str]:
    """The route pattern being served and the innermost line of application code, from a stack."""
    route = where = ""
    while frame is not None:
        code = frame.f_code
        filename = os.path.abspath(code.co_filename)
        library = filename.startswith((_PACKAGE, _GEVENT)) or (
            filename.startswith(_STDLIB) and "site-packages" not in filename
        )
        if not where and not library and "<frozen" not in filename:
            where = f"{os.path.basename(filename)}:{frame.f_lineno} in {code.co_name}"
        if not route and code.co_name == "serve" and filename.endswith(os.path.join("hosting", "host.py")):
            target = frame.f_locals.get("target")
            route = escape_for_log(str(getattr(target, "pattern", "") or ""))
        frame = frame.f_back
    return route, escape_for_log(where)


#: Episodes in which a hub was blocked past its threshold, and the seconds they lasted (each as
#: long as the watch last saw it late: up to ``threshold / 2`` short), in this process.
_totals: list[float] = [0, 0.0]


def blocking_totals() -> tuple[int, float]:
    """(episodes, seconds) of blocked hubs in this process so far (what ``ignitia_sync.metrics`` exports).

    An episode counts when its warning is written; its seconds when it ends.

    Example:
        >>> episodes, seconds = blocking_totals()
        >>> episodes >= 0 and seconds >= 0
        True
    """
    return int(_totals[0]), float(_totals[1])


#: The watch of each hub (a thread id can be reused by a new thread with a new hub).
_watches: weakref.WeakKeyDictionary[Any, BlockingWatch] = weakref.WeakKeyDictionary()


def watch_this_hub(threshold: float) -> BlockingWatch:
    """The watch of the calling thread's hub, started now if it has none (one per hub).

    Example:
        >>> watch = watch_this_hub(5.0)
        >>> watch is watch_this_hub(5.0)
        True
        >>> watch.release(); watch.release()  # this example's two uses given back (the last user stops it)
    """
    hub = gevent.get_hub()
    watch = _watches.get(hub)
    if watch is None or not watch.running:
        watch = _watches[hub] = BlockingWatch(threshold)
        watch.start()
    watch._users += 1
    return watch


def _forget_watches_after_fork() -> None:
    _watches.clear()  # their threads stayed in the parent


os.register_at_fork(after_in_child=_forget_watches_after_fork)
