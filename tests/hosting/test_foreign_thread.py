"""A connection is used from the OS thread that serves it: recv, send and close from another raise.

The server runs in its own thread and hub (``serve``); the test's main thread is the foreign one.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest
from websockets.sync.client import connect

from ignitia_sync import Router
from tests.conftest import url
from tests.waiting import wait_for

THE_WAY = "registry.call_threadsafe"


def test_recv_send_and_close_from_another_os_thread_raise_and_name_the_way(serve):
    handed: queue.Queue[Any] = queue.Queue()
    tried = threading.Event()

    def handler(ws: Any) -> None:
        handed.put(ws)
        wait_for(tried.is_set, "the test's thread to try its calls")  # (gevent.sleep: the hub runs meanwhile)
        ws.send_text(f"still mine: {ws.recv(timeout=5).data}")  # the serving thread may

    server = serve(Router().websocket("/ws", handler))
    with connect(url(server, "/ws")) as client:
        ws = handed.get(timeout=5)
        client.send("hello")
        for call in (lambda: ws.recv(timeout=1), lambda: ws.recv_json(timeout=1), lambda: ws.send_text("x"),
                     lambda: ws.close()):
            with pytest.raises(RuntimeError, match=THE_WAY):
                call()
        tried.set()
        assert client.recv(timeout=5) == "still mine: hello"  # the foreign recv took nothing
