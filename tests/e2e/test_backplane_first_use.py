"""A process that has served no WebSocket publishes what its HTTP views broadcast, under every host.

Two processes of ``tests/scripts/lifecycle_app.py`` share a real Redis: the room's member is on
one, the HTTP POST that broadcasts goes to the other. Under ``ignitia-sync`` the registry starts
its backplane in the process's hub on that first broadcast; under ``flask run`` (Werkzeug,
threaded, no hub of its own) in a thread of its own. (gunicorn: ``test_gunicorn_worker.py``.)
"""

from __future__ import annotations

import contextlib
import urllib.request

import pytest
from websockets.sync.client import connect

from tests.redis_server import RedisServer
from tests.subprocess_server import free_port, host_command, running
from tests.waiting import wait_for

TARGET = "tests.scripts.lifecycle_app:app"


@pytest.mark.parametrize("host", ["ignitia-sync", "werkzeug"])
def test_an_http_view_broadcasts_to_another_process_before_any_websocket_here(
    redis_server: RedisServer, host: str
):
    env = {"IGNITIA_TEST_REDIS": redis_server.url}
    ports = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        for port in ports:
            stack.enter_context(running(host_command(host, TARGET, port), port, env))
        with connect(f"ws://127.0.0.1:{ports[0]}/ws/room/news", open_timeout=10) as member:
            assert member.recv(timeout=10).startswith("joined")
            wait_for(lambda: redis_server.subscribers("ignitia:room:news") >= 1, "the member's process to subscribe")
            for n in range(2):  # the first starts the other process's backplane; the second finds it started
                post = f"http://127.0.0.1:{ports[1]}/broadcast/news"
                with urllib.request.urlopen(post, data=f"news {n}".encode(), timeout=10) as response:
                    assert response.status == 200
                assert member.recv(timeout=5) == f"news {n}"
