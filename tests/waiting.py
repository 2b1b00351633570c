"""Wait for an observable condition, never for a guessed time: the one polling helper of the suite.

``wait_for(lambda: server.stats()["open"] == 2, "two open connections")`` returns as soon as
the condition holds and fails the test with ``what`` when ``timeout`` seconds pass first. It
sleeps through ``gevent.sleep``, so it also lets the current thread's hub run (the Redis tests
poll from inside the hub that serves); from a plain thread that is an ordinary sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent


def wait_for(condition: Callable[[], object], what: str = "the condition", timeout: float = 10.0,
             interval: float = 0.01) -> None:
    """Return once ``condition()`` is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        gevent.sleep(interval)
