"""Log lines that stay readable under attack: throttled, and free of control characters."""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Any

__all__ = ["LogThrottle", "escape_for_log", "safe_url"]


class LogThrottle:
    """At most ``burst`` lines per ``interval`` seconds, then one line saying how many were held back.

    A flood of refused handshakes must not flood the log.

    Example:
        >>> throttle = LogThrottle(logging.getLogger("demo"), burst=2, interval=60.0)
        >>> for _ in range(5):
        ...     throttle.log("refused %s", "x")
        >>> throttle.held_back
        3
    """

    def __init__(
        self, logger: logging.Logger, burst: int = 20, interval: float = 10.0, level: int = logging.INFO
    ) -> None:
        self._logger = logger
        self._level = level
        self._burst = burst
        self._interval = interval
        self._started = time.monotonic()
        self._count = 0
        #: Lines not written in the current interval.
        self.held_back = 0

    def log(self, message: str, *args: Any) -> None:
        """Log ``message % args`` (at INFO by default), unless this interval's burst is spent."""
        now = time.monotonic()
        if now - self._started >= self._interval:
            if self.held_back:
                self._logger.log(
                    self._level, "%d more like the last were not logged in %.0fs", self.held_back, now - self._started
                )
            self._started, self._count, self.held_back = now, 0, 0
        if self._count < self._burst:
            self._count += 1
            self._logger.log(self._level, message, *args)
        else:
            self.held_back += 1


def escape_for_log(text: str) -> str:
    """``text`` with control characters escaped, safe for one log line.

    Example:
        >>> escape_for_log("/chat\\nFAKE LINE")
        '/chat\\\\nFAKE LINE'
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def safe_url(url: str) -> str:
    """A URL for a message or a log line: no user info or query (secrets), no control characters.

    Example:
        >>> safe_url("http://user:secret@proxy:3128/?token=abc")
        'http://proxy:3128/'
        >>> safe_url("redis://:hunter2@cache:6379/0")
        'redis://cache:6379/0'
    """
    parts = urllib.parse.urlsplit(url.split("?", 1)[0])
    netloc = parts.netloc.rpartition("@")[2]
    return escape_for_log(urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def show_logs_by_default(logger_name: str = "ignitia_sync") -> bool:
    """Print the library's lines on stderr when the application configured no logging.

    Hosts call it when they start, as Werkzeug and gunicorn do for their own lines: a
    handler's traceback, the start and stop lines and one access line per WebSocket then
    reach the terminal of a script that never called ``logging.basicConfig``. An
    application that configured logging (a root handler, or a level or handler of its own
    on ``ignitia_sync``) is left untouched. Returns True when it added the handler.

    Example:
        >>> import logging
        >>> logging.getLogger().handlers != [] or show_logs_by_default("demo.quiet")
        True
    """
    logger = logging.getLogger(logger_name)
    configured = logging.root.handlers or logger.level != logging.NOTSET or any(
        not isinstance(handler, logging.NullHandler) for handler in logger.handlers
    )
    if configured:
        return False
    handler = _UntilConfigured()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return True


class _UntilConfigured(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, until the application configures logging itself: then it steps aside for good."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.root.handlers:  # configured since: its handlers get the record; we stop
            logger = logging.getLogger(record.name.split(".", 1)[0])
            logger.removeHandler(self)
            logger.setLevel(logging.NOTSET)
            return
        super().emit(record)
