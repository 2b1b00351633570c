"""One time budget carried across several steps: ``Deadline(seconds)``, then ``left()`` at each.

Example:
    >>> deadline = Deadline(5.0)
    >>> 4.9 < deadline.left() <= 5.0
    True
    >>> Deadline(None).left() is None
    True
"""

from __future__ import annotations

import time

__all__ = ["Deadline"]


class Deadline:
    """A point in time ``seconds`` from now, or none at all (``None``: no limit).

    Example:
        >>> Deadline(0.0).expired
        True
    """

    __slots__ = ("at",)

    def __init__(self, seconds: float | None) -> None:
        #: The ``time.monotonic()`` value it ends at, or None.
        self.at = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        """Seconds still left (0.0 once passed), or None without a limit."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        """True once the time is up (never without a limit)."""
        return self.at is not None and time.monotonic() >= self.at
