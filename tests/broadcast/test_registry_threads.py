"""The registry's hub: calls from other OS threads are handed to it, through one ``HubRef``.

With connections, across a real server, this is tests/broadcast/test_registry.py
(``broadcast_threadsafe`` from a thread, ``call_threadsafe(identify)``); here the hand-over
itself: where and how the call runs, what is logged when it fails, what a threaded registry
and a registry whose hub has gone do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import gevent
import pytest

from ignitia_sync import Message
from ignitia_sync.broadcast.registry import LocalBackplane, Registry
from ignitia_sync.connection.threads import real_get_ident
from tests.waiting import wait_for


def in_thread(func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` in a new OS thread (no hub of its own unless it makes one); its result."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(func(*args))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    if failure:
        raise failure[0]
    return result[0]


class RecordingBackplane(LocalBackplane):
    def __init__(self) -> None:
        self.published: list[tuple[str, int]] = []
        self.sent: list[tuple[str, int]] = []

    def publish(self, message: Message, room: str | None) -> None:
        self.published.append((message.data, real_get_ident()))  # type: ignore[union-attr]

    def send_to(self, id: str, message: Message) -> bool:
        self.sent.append((id, real_get_ident()))
        return False


def test_a_call_from_another_thread_runs_in_the_registry_hub_in_a_greenlet_of_its_own():
    registry = Registry()
    registry.attach()
    ran: list[tuple[int, Any]] = []

    def record(tag: str) -> None:
        gevent.sleep(0.01)  # it may block: it has a greenlet of its own
        ran.append((real_get_ident(), gevent.getcurrent()))

    assert in_thread(registry.call_threadsafe, record, "x") is None  # returns at once
    assert ran == []
    wait_for(lambda: bool(ran))
    thread, greenlet = ran[0]
    assert thread == real_get_ident()
    assert greenlet is not gevent.getcurrent() and greenlet is not gevent.get_hub()


@pytest.mark.expect_errors  # the test makes it raise
def test_a_failing_call_is_logged_and_the_next_one_still_runs(caplog):
    registry = Registry()
    registry.attach()
    ran: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    in_thread(registry.call_threadsafe, fail)
    in_thread(registry.call_threadsafe, ran.append, "after")
    wait_for(lambda: ran == ["after"])
    failures = [r for r in caplog.records if "another thread failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert "boom" in str(failures[0].exc_info[1])


def test_in_its_own_thread_before_attach_and_when_threaded_a_call_runs_at_once():
    ran: list[int] = []
    fresh = Registry()
    in_thread(fresh.call_threadsafe, lambda: ran.append(real_get_ident()))  # no hub yet
    attached = Registry()
    attached.attach()
    attached.call_threadsafe(ran.append, real_get_ident())  # its own thread
    threaded = Registry()
    threaded.serve_from_threads()
    other = in_thread(lambda: threaded.call_threadsafe(ran.append, real_get_ident()) or real_get_ident())
    assert ran[0] != real_get_ident()  # ran in the calling thread, at once
    assert ran[1] == real_get_ident()
    assert ran[2] == other
    assert threaded._hub is None  # a threaded registry has no one hub


def test_broadcast_and_send_to_from_another_thread_are_handed_to_the_hub():
    backplane = RecordingBackplane()
    registry = Registry(backplane)
    registry.attach()
    assert in_thread(registry.broadcast, Message.text("hi")) == 0  # handed over: nothing counted here
    assert in_thread(registry.send_to, "alice", Message.text("hi")) is True
    assert backplane.published == [] and backplane.sent == []
    wait_for(lambda: bool(backplane.published and backplane.sent))
    assert backplane.published == [("hi", real_get_ident())]
    assert backplane.sent == [("alice", real_get_ident())]
    # In the hub's own thread, both run at once.
    assert registry.broadcast(Message.text("here")) == 0
    assert backplane.published[-1] == ("here", real_get_ident())


def test_a_registry_whose_hub_is_gone_refuses_calls_from_other_threads():
    registry = Registry()

    def attach_then_end() -> None:
        registry.attach()
        gevent.get_hub().destroy(destroy_loop=True)  # what a server's thread does when it ends

    in_thread(attach_then_end)
    with pytest.raises(ValueError, match="destroyed loop"):
        registry.call_threadsafe(print, "never")
    with pytest.raises(ValueError, match="destroyed loop"):
        registry.broadcast_threadsafe(Message.text("never"))


def test_attach_binds_to_the_loop_it_is_given_and_the_calling_thread():
    registry = Registry()
    loop = gevent.get_hub().loop
    registry.attach(loop)
    assert registry._hub is not None
    assert registry._hub.loop is loop and registry._hub.owns()
    assert in_thread(registry._hub.owns) is False
