"""Full-jitter exponential backoff: how long to wait before the next attempt.

The client's :func:`~ignitia_sync.client.reconnecting` and the Redis backplane's reconnects
both wait this way, so that clients (or workers) dropped together do not all come back at
once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """How long :func:`reconnecting` waits before each new attempt: full jitter, exponential.

    The n-th wait in a row (from 0) is random in ``0 .. min(cap, first * factor ** n)``:
    the first in 0-5 s, as RFC 6455 section 7.2.3 asks, so that clients dropped together
    do not all come back at once. The count starts again after a connection stayed open
    ``reset_after`` seconds.

    Example:
        >>> backoff = Backoff(first=1.0, factor=2.0, cap=4.0)
        >>> [backoff.ceiling(n) for n in range(4)]
        [1.0, 2.0, 4.0, 4.0]
    """

    first: float = 5.0
    factor: float = 1.618
    cap: float = 60.0
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        if not (self.first > 0 and self.factor >= 1 and self.cap >= self.first and self.reset_after >= 0):
            raise ValueError("Backoff needs first > 0, factor >= 1, cap >= first, reset_after >= 0")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before the ``attempt``-th retry in a row (from 0)."""
        return float(min(self.cap, self.first * self.factor ** min(attempt, 64)))

    def delay(self, attempt: int) -> float:
        """A random wait for the ``attempt``-th retry in a row (full jitter)."""
        return random.uniform(0, self.ceiling(attempt))
