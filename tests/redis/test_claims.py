"""RedisBackplane.claim in one hub: refused, taken over, unchecked while Redis is unreachable, then reconciled.

Two backplanes in the test's hub are two processes as far as Redis knows (each has its own
uid); Redis is a real redis-server; a partition is ``tests/redis/tcp_proxy.py`` cutting one
backplane's connections and refusing new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ignitia_sync.redis import Emitter, RedisBackplane
from tests.waiting import wait_for

from .tcp_proxy import CuttingProxy


def owner(server: Any, id: str) -> bytes | None:
    """The uid the directory names for ``id``."""
    value = server.client().get("{ignitia}:id:" + id)
    return None if value is None else bytes(value)


@pytest.fixture
def make(redis_server) -> Iterator[Callable[..., tuple[RedisBackplane, list[tuple[str, Any]]]]]:
    """``make(url=..., **options)``: an attached backplane (up) and the direct messages it delivered."""
    made: list[RedisBackplane] = []

    def create(url: str | None = None, **options: Any) -> tuple[RedisBackplane, list[tuple[str, Any]]]:
        options = {"reconnect_initial": 0.05, "reconnect_max": 0.2, **options}
        backplane = RedisBackplane(url or redis_server.url, **options)
        direct: list[tuple[str, Any]] = []
        backplane.attach(lambda message, room: None, lambda id, message: direct.append((id, message.data)))
        made.append(backplane)
        wait_for(lambda: backplane.stats()["up"], "the link")
        return backplane, direct

    yield create
    for backplane in made:
        backplane.close()


def test_a_claim_is_refused_while_another_process_has_the_id_unless_it_takes_over(redis_server, make):
    (first, first_got), (second, second_got) = make(id_ttl=0.6), make(id_ttl=0.6)
    emitter = Emitter(redis_server.url)
    try:
        assert first.claim("zoe") is True  # this greenlet waits for Redis; the publishers run meanwhile
        first.identified("zoe")
        assert first.claim("zoe") is True  # already ours
        assert second.claim("zoe") is False
        assert second.stats()["ids_refused"] == 1 and second.stats()["ids"] == 0
        assert second.claim("zoe", take_over=True) is True
        second.identified("zoe")
        assert emitter.send_to("zoe", "to the new one")
        wait_for(lambda: second_got == [("zoe", "to the new one")], "the direct message")
        wait_for(lambda: first.stats()["ids_lost"] == 1, "the first to notice at its refresh")
        assert first_got == []
        second.forgotten("zoe")  # the new one leaves: the old one, still here, gets her back
        wait_for(lambda: owner(redis_server, "zoe") == first.uid, "zoe's entry written again by the first")
        assert emitter.send_to("zoe", "back")
        wait_for(lambda: first_got == [("zoe", "back")], "the direct message to the first")
        assert second_got == [("zoe", "to the new one")]
    finally:
        emitter.close()


def test_a_claim_while_redis_is_unreachable_is_checked_when_the_link_is_back(redis_server, make):
    proxy = CuttingProxy(redis_server.port)
    emitter = Emitter(redis_server.url)
    try:
        (cut_off, _), (other, other_got) = make(url=proxy.url), make()
        cut_off.identified("kept")
        wait_for(lambda: emitter.send_to("kept", "x"), "kept in the directory")
        proxy.refusing = True
        proxy.cut_all()
        wait_for(lambda: cut_off._link.drops, "the cut-off process to see Redis down")
        assert cut_off.claim("yan") is True  # cannot be checked: accepted at once, checked later
        cut_off.identified("yan")
        cut_off.forgotten("kept")  # leaves while cut off: forgotten once back, from its own state
        assert other.claim("yan") is True  # the directory has no yan yet
        other.identified("yan")
        proxy.refusing = False
        wait_for(lambda: cut_off.stats()["up"], "the link back")
        wait_for(lambda: cut_off.stats()["ids_lost"] == 1, "the conflict found and counted")
        wait_for(lambda: not emitter.send_to("kept", "gone?"), "kept out of the directory")
        assert emitter.send_to("yan", "to the one that claimed first")
        wait_for(lambda: other_got == [("yan", "to the one that claimed first")], "the direct message")
    finally:
        emitter.close()
        proxy.close()


def test_a_take_over_claimed_while_redis_is_unreachable_is_written_by_take_over(redis_server, make):
    proxy = CuttingProxy(redis_server.port)
    emitter = Emitter(redis_server.url)
    try:
        (cut_off, cut_off_got), (other, _) = make(url=proxy.url), make(id_ttl=1.5)
        assert other.claim("ann") is True
        other.identified("ann")
        proxy.refusing = True
        proxy.cut_all()
        wait_for(lambda: cut_off._link.drops, "Redis down for the cut-off process")
        assert cut_off.claim("ann", take_over=True) is True
        cut_off.identified("ann")
        proxy.refusing = False
        wait_for(lambda: owner(redis_server, "ann") == cut_off.uid, "ann moved to the cut-off process")
        assert emitter.send_to("ann", "moved")
        wait_for(lambda: cut_off_got, "the direct message")
        assert cut_off_got == [("ann", "moved")] and cut_off.stats()["ids_lost"] == 0
        wait_for(lambda: other.stats()["ids_lost"] == 1, "the other process to notice at its refresh", timeout=15)
    finally:
        emitter.close()
        proxy.close()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_pending_bytes"):
        RedisBackplane(max_pending_bytes=0)
    with pytest.raises(ValueError, match="id_ttl"):
        RedisBackplane(id_ttl=0)
    backplane = RedisBackplane()
    assert (backplane.max_pending_bytes, backplane.id_ttl) == (16 << 20, 30.0)
    stats = backplane.stats()
    assert {"given_up", "ids_refused", "ids_lost", "pending_bytes", "ids"} <= set(stats)
