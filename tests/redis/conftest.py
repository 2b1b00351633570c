"""Fixtures of the Redis tests: ``make``, a backplane on the test's own redis-server.

(``redis_server`` itself is in tests/conftest.py; test_backplane_faults.py and test_claims.py
keep a ``make`` of their own that also records deliveries.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ignitia_sync.redis import RedisBackplane


@pytest.fixture
def make(redis_server) -> Iterator[Callable[..., RedisBackplane]]:
    """``make(**options)``: a backplane on the test's Redis, attached in this hub, closed after."""
    made: list[RedisBackplane] = []

    def create(**options: Any) -> RedisBackplane:
        options = {"reconnect_initial": 0.05, "reconnect_max": 0.2, **options}
        backplane = RedisBackplane(redis_server.url, **options)
        backplane.attach(lambda message, room: None, lambda id, message: None)
        made.append(backplane)
        return backplane

    yield create
    for backplane in made:
        backplane.close(timeout=1)  # Redis may be frozen or gone by now: the test is over


@pytest.fixture
def clients() -> Iterator[contextlib.ExitStack]:
    """Client connections a test opens (``revocation_clients.opened``), closed after it."""
    with contextlib.ExitStack() as stack:
        yield stack
