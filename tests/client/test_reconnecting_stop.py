"""Reconnecting.stop() ends a wait between attempts at once, from the loop's thread or another."""

from __future__ import annotations

import threading

import gevent
import pytest

from ignitia_sync.client import Backoff, Reconnecting, reconnecting
from tests.subprocess_server import free_port


def _waiting_loop(wait: float = 30.0) -> Reconnecting:
    """A loop against a port nobody listens on, whose every wait lasts ``wait`` seconds."""
    backoff = Backoff(first=wait, cap=wait)
    object.__setattr__(backoff, "delay", lambda attempt: wait)
    return reconnecting(f"ws://127.0.0.1:{free_port()}/", backoff=backoff, open_timeout=1)


@pytest.mark.parametrize("stop_from", ["another thread", "a greenlet of the same thread"])
def test_stop_ends_a_wait_between_attempts(stop_from):
    loop = _waiting_loop()
    if stop_from == "another thread":
        threading.Timer(0.3, loop.stop).start()
    else:
        gevent.spawn_later(0.3, loop.stop)
    ended = threading.Event()

    def iterate() -> None:
        for _ in loop:
            pytest.fail("nobody listens: no connection")
        ended.set()

    gevent.spawn(iterate).join(timeout=10)  # stop() ends the 30 s wait between attempts at once
    assert ended.is_set(), "the loop still waits after stop()"
    assert loop.attempts == 1 and loop.connections == 0 and loop.last_delay == 30.0
    assert isinstance(loop.last_error, ConnectionRefusedError)


def test_stop_before_the_loop_starts_means_no_attempt():
    loop = _waiting_loop()
    loop.stop()
    loop.stop()  # idempotent
    assert list(loop) == [] and loop.attempts == 0
