"""A registry that no host started starts its backplane on first use, where that use can keep it running.

(The same across real processes: ``tests/e2e/test_backplane_first_use.py`` and
``tests/e2e/test_gunicorn_worker.py``.)
"""

from __future__ import annotations

from typing import Any

import gevent
import pytest

from ignitia_sync import Message
from ignitia_sync.broadcast.registry import LocalBackplane, Registry
from tests.broadcast.test_registry_threads import in_thread


class AttachRecorder(LocalBackplane):
    def __init__(self) -> None:
        self.attached: list[bool] = []
        self.published: list[Any] = []

    def attach(self, on_broadcast: Any, on_direct: Any, *, threaded: bool = False) -> None:
        self.attached.append(threaded)

    def publish(self, message: Message, room: str | None) -> None:
        self.published.append((message, room))


@pytest.mark.parametrize("first", ["broadcast", "send_to"])
def test_in_a_thread_with_a_hub_the_first_use_attaches_to_that_hub(first: str):
    gevent.get_hub()  # this thread's hub (a gunicorn worker's, a pywsgi server's)
    backplane = AttachRecorder()
    registry = Registry(backplane)
    getattr(registry, first)(*(("alice",) if first == "send_to" else ()), Message.text("hi"))
    assert backplane.attached == [False] and registry._hub is not None and registry._hub.owns()
    registry.broadcast(Message.text("again"))
    assert backplane.attached == [False]  # once


def test_in_a_thread_without_a_hub_the_first_use_makes_the_registry_threaded():
    """A view's thread under a threaded server (its hub would not outlive the request), or a
    process that serves no WebSocket (a task queue's worker): the backplane gets a thread of its own."""
    backplane = AttachRecorder()
    registry = Registry(backplane)
    assert in_thread(registry.broadcast, Message.text("hi"), "room") == 0
    assert backplane.attached == [True] and registry.threaded
    assert [room for _, room in backplane.published] == ["room"]
