"""gunicorn and our app: SIGINT/SIGQUIT to ``ignitia_sync.gunicorn.Worker`` with peers that do and do
not answer the Close, and the same app under gunicorn's sync and gthread workers (refused, not hung).

gunicorn runs in a subprocess with ``tests/scripts/signals_app.py`` (WebSocketMiddleware,
``close_timeout=0.5``); the peers are ``websockets``' client and ``tests/wire.py``'s raw socket.
"""

from __future__ import annotations

import os
import signal
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.subprocess_server import free_port, host_command, running
from tests.waiting import wait_for
from tests.wire import Peer

TARGET = "tests.scripts.signals_app:app"


def pid_of(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return int(response.read())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=lambda sig: sig.name)
def test_a_quick_stop_sends_1001_to_every_websocket_and_a_silent_peer_is_dropped_after_close_timeout(sig):
    port = free_port()
    output: list[str] = []
    with running(host_command("gunicorn", TARGET, port), port, output=output):
        silent = Peer(("127.0.0.1", port), timeout=5)  # far beyond close_timeout: at_eof() fails if it waits longer
        silent.upgrade("/ws/hold")
        worker = int(silent.read_frame()[1].decode().split()[1])
        with connect(f"ws://127.0.0.1:{port}/ws/hold", open_timeout=10) as polite:
            assert polite.recv(timeout=10) == f"ready {worker}"
            os.kill(worker, sig)
            with pytest.raises(ClientClosed):
                polite.recv(timeout=10)
            assert polite.protocol.close_rcvd is not None
            assert (polite.protocol.close_rcvd.code, polite.protocol.close_rcvd.reason) == (1001, "Server shutdown")
        assert silent.read_close() == (1001, "Server shutdown")
        assert silent.at_eof()  # never answered: dropped after close_timeout (0.5 s), not kept open
        silent.close()
        wait_for(lambda: not alive(worker), "the worker to exit", timeout=10)
        wait_for(lambda: pid_of(port) != worker, "a new worker", timeout=30)
    assert f"Worker exiting (pid: {worker})" in output[0]


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_under_a_worker_that_is_not_gevent_an_upgrade_is_refused_with_500_and_one_clear_line(worker_class):
    port = free_port()
    command = host_command("gunicorn", TARGET, port)
    command[command.index("-k") + 1] = worker_class
    output: list[str] = []
    with running(command, port, output=output, allow_500=True):
        for _ in range(2):
            with pytest.raises(InvalidStatus) as refused:
                connect(f"ws://127.0.0.1:{port}/ws/hold", open_timeout=10)
            assert refused.value.response.status_code == 500
            assert refused.value.response.body == b"this server cannot upgrade to WebSocket\n"
        assert pid_of(port) > 0  # the worker is not stuck: plain HTTP is still served
    lines = output[0].splitlines()
    advice = [line for line in lines if "ignitia_sync" in line and "ERROR" in line]
    assert len(advice) == 2 and all(
        line.endswith("ERROR ignitia_sync.wsgi: gunicorn must run with the gevent worker (-k gevent) to serve "
                      "WebSockets") for line in advice), lines
    assert "Traceback" not in output[0]
