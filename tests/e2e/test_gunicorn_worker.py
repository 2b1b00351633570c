"""``-k ignitia_sync.gunicorn.Worker`` from boot to exit: each worker's backplane, every way a worker ends.

gunicorn runs in a subprocess with ``tests/scripts/lifecycle_app.py`` (a Flask app whose
answers name the process that gave them); Redis is a real ``redis-server``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.redis_server import RedisServer
from tests.subprocess_server import ROOT, free_port, host_command, running
from tests.waiting import wait_for
from tests.wire import Peer, frame

TARGET = "tests.scripts.lifecycle_app:app"
#: Far longer than any drain in these tests: a close that waits for it is the bug.
GRACEFUL = 30
#: How long a drain may take here: 1001s go out at once, the worker exits within its next tick.
PROMPT = 5.0


def gunicorn(port: int, workers: int = 1, *options: str) -> list[str]:
    command = host_command("gunicorn", TARGET, port, workers=workers)
    return [*command[:-1], "--graceful-timeout", str(GRACEFUL), *options, command[-1]]


def get(port: int, path: str, data: str | None = None) -> str:
    body = None if data is None else data.encode()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", data=body, timeout=30) as response:
        return str(response.read().decode())


wait_until = functools.partial(wait_for, timeout=15.0)  # processes of their own: a longer wait


def closed_with(ws: ClientConnection, within: float) -> int | None:
    """Read until the connection ends: the close code received (None: no Close, 1006).

    Each read waits at most ``within`` seconds: a drain that waits out ``--graceful-timeout``
    instead of closing at once fails the test with ``TimeoutError``.
    """
    with pytest.raises(ClientClosed):
        while True:
            ws.recv(timeout=within)
    received = ws.protocol.close_rcvd
    return received.code if received is not None else None


class SlowReader(Peer):
    """A raw WebSocket client to /ws/queued with a small receive buffer that reads only when told:
    what the server queued meanwhile waits in the server's own queue, not in the kernel's."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.sock.settimeout(PROMPT)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""
        self.upgrade("/ws/queued")
        assert self.text().startswith("0000")  # the handler has queued everything

    def text(self) -> str:
        opcode, payload, _ = self.read_frame()
        assert opcode == 0x1, (opcode, payload[:40])
        return payload.decode()

    def drained(self) -> None:
        """The other 799 messages in order, then a 1001 Close (answered), then the end."""
        assert [self.text()[:4] for _ in range(799)] == [f"{i:04d}" for i in range(1, 800)]
        assert self.read_close() == (1001, "Server shutdown")
        self.send(frame(0x8, (1001).to_bytes(2, "big")))
        assert self.at_eof()
        self.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def served_again(port: int, old_pid: int) -> int:
    """Open a WebSocket until a worker other than ``old_pid`` serves it; returns that worker's pid."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with connect(f"ws://127.0.0.1:{port}/ws/hold", open_timeout=10) as ws:
                pid = int(ws.recv(timeout=10).split()[1])
            if pid != old_pid:
                return pid
        except (OSError, InvalidStatus, InvalidMessage, ClientClosed, TimeoutError):
            pass  # the old worker may still answer 503, or be gone between accept and answer
        assert time.monotonic() < deadline, "no new worker served a WebSocket"
        time.sleep(0.1)


# -- 1. the backplane starts with each worker ------------------------------------------------------


@pytest.mark.parametrize("preload", [False, True], ids=["forked-then-loaded", "preload"])
def test_an_http_view_of_a_worker_that_never_served_a_websocket_broadcasts_at_once(
    redis_server: RedisServer, preload: bool
):
    """Worker A has the room's member; worker B, HTTP only, handles the POST that broadcasts.

    With ``--preload`` the app (and its backplane object) is made in the master, before the fork.
    """
    port = free_port()
    options = ["--preload"] if preload else []
    with running(gunicorn(port, 2, *options), port, {"IGNITIA_TEST_REDIS": redis_server.url}):
        # Each worker starts its backplane when it boots: both listen before anything is served.
        wait_until(lambda: redis_server.subscribers("ignitia:all") == 2, "both workers to subscribe")
        with connect(f"ws://127.0.0.1:{port}/ws/room/news", open_timeout=10) as member:
            member_pid = int(member.recv(timeout=10).split()[1])
            wait_until(lambda: redis_server.subscribers("ignitia:room:news") == 1, "the room's subscription")
            for attempt in range(60):  # the kernel picks the worker that accepts: until B takes one
                text = f"news {attempt}"
                handled_by = int(get(port, "/broadcast/news", text))
                assert member.recv(timeout=PROMPT) == text, f"handled by {handled_by}"
                if handled_by != member_pid:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("every POST landed on the member's worker")


# -- 9. every way a worker ends drains its WebSockets first ----------------------------------------


@pytest.fixture
def one_worker() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    with running(gunicorn(port, 1, "--max-requests", "3"), port) as process:
        yield port, process


def test_a_max_requests_restart_closes_websockets_with_1001_at_once_and_a_new_worker_serves(one_worker):
    port, _ = one_worker
    with connect(f"ws://127.0.0.1:{port}/ws/hold", open_timeout=10) as ws:  # request 1
        old_pid = int(ws.recv(timeout=10).split()[1])
        get(port, "/pid")  # request 2
        get(port, "/pid")  # request 3: the worker restarts after it
        assert closed_with(ws, within=PROMPT) == 1001  # at once, not after --graceful-timeout
    assert served_again(port, old_pid) != old_pid
    wait_until(lambda: not alive(old_pid), "the old worker to exit", timeout=PROMPT)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGABRT],
                         ids=lambda sig: sig.name)
def test_a_signal_to_the_worker_sends_the_queued_messages_then_1001_then_it_exits(sig: signal.Signals):
    """What the arbiter sends a worker: TERM (reload, fewer workers), QUIT (quick stop), INT, ABRT."""
    port = free_port()
    output: list[str] = []
    # A worker that ends on ABRT exits with 1, which gunicorn logs as an [ERROR]: read the log here.
    with contextlib.ExitStack() as stack:
        process = stack.enter_context(
            running(gunicorn(port, 1), port, output=output)
            if sig != signal.SIGABRT else _unchecked(gunicorn(port, 1), port, output)
        )
        peer = SlowReader(port)
        worker = int(get(port, "/pid"))
        os.kill(worker, sig)
        time.sleep(1.0)  # not reading yet: a worker that exits without draining cuts the queue
        peer.drained()
        wait_until(lambda: not alive(worker), "the worker to exit", timeout=PROMPT)
        assert served_again(port, worker) != worker  # the master started another
        assert process.poll() is None
    if sig == signal.SIGABRT:
        assert "Traceback" not in output[0], output[0]


@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGINT], ids=lambda sig: sig.name)
def test_a_quick_stop_of_gunicorn_drains_too(sig: signal.Signals):
    """QUIT or INT to the master: it sends QUIT to each worker and waits at most --graceful-timeout."""
    port = free_port()
    with running(gunicorn(port, 1), port) as process:
        peer = SlowReader(port)
        process.send_signal(sig)
        time.sleep(1.0)  # not reading yet: a worker that exits without draining cuts the queue
        peer.drained()
        assert process.wait(PROMPT) == 0


def test_a_worker_whose_master_died_drains_and_exits():
    port = free_port()
    with _unchecked(gunicorn(port, 1), port, []) as process:
        with connect(f"ws://127.0.0.1:{port}/ws/hold", open_timeout=10) as ws:
            worker = int(ws.recv(timeout=10).split()[1])
            try:
                process.kill()  # SIGKILL: the master has no say; the worker notices within a second
                process.wait(10)
                assert closed_with(ws, within=PROMPT) == 1001  # at once, not after --graceful-timeout
                wait_until(lambda: not alive(worker), "the orphaned worker to exit", timeout=PROMPT)
            finally:
                if alive(worker):
                    os.kill(worker, signal.SIGKILL)


@contextlib.contextmanager
def _unchecked(command: list[str], port: int, output: list[str]) -> Iterator[subprocess.Popen[str]]:
    """:func:`running` without its log checks (a worker that exits with 1 is an [ERROR] for gunicorn)."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/pid", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        output.append(process.communicate(timeout=GRACEFUL + 10)[0])
