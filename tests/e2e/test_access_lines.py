"""One access line per WebSocket, saying 101, under every host a Flask or Django user runs.

Each host runs in its own process; the test reads its output line by line while it runs,
opens one WebSocket, closes it, and counts the lines that name the WebSocket's path.
Before: ``flask run --debug`` logged ``"GET /ws/count/3 HTTP/1.1" 500 -`` besides ours;
pywsgi (and ``ignitia-sync``'s fallback) added ``"GET /ws/count/3 HTTP/1.1" 000 - 0.003``
(Django: ``200``); gunicorn's access log added a ``200`` line for a Django view.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from tests.subprocess_server import ROOT, free_port, host_command
from tests.waiting import wait_for
from tests.wire import Peer, frame

FLASK = ("tests.scripts.flask_app:app", "/ws/count/3", "/resources")
DJANGO = ("examples.django_project.wsgi:application", "/ws/greet/lobby/", "/")
ACCESS_LOG = ["--access-logfile", "-"]  # gunicorn writes its own access lines too

CASES = {
    "flask run": ("werkzeug", FLASK, []),
    "flask run --debug": ("werkzeug", FLASK, ["--debug"]),
    "pywsgi flask": ("pywsgi", FLASK, []),
    "pywsgi django": ("pywsgi", DJANGO, []),
    "gunicorn -k gevent flask": ("gunicorn-gevent", FLASK, ACCESS_LOG),
    "gunicorn -k gevent django": ("gunicorn-gevent", DJANGO, []),
    "gunicorn worker flask": ("gunicorn", FLASK, ACCESS_LOG),
    "gunicorn worker django": ("gunicorn", DJANGO, ACCESS_LOG),
    "ignitia-sync flask": ("ignitia-sync", FLASK, []),
    "ignitia-sync django": ("ignitia-sync", DJANGO, []),
}


def command(host: str, target: str, port: int, extra: list[str]) -> list[str]:
    if host == "pywsgi":
        return [sys.executable, os.path.join(ROOT, "tests", "scripts", "pywsgi_serve.py"), str(port), target]
    if host == "gunicorn-gevent":  # gunicorn's own gevent worker, otherwise as the tests run ours
        ours = host_command("gunicorn", target, port)
        return [*ours[:2], "gevent", *ours[3:-1], *extra, target]
    return host_command(host, target, port) + extra


@contextlib.contextmanager
def watched(command: list[str], port: int) -> Iterator[list[str]]:
    """The process's output lines as they come (a reader thread), for waiting on a log line."""
    env = {**os.environ, "PYTHONPATH": ROOT, "DJANGO_SETTINGS_MODULE": "examples.django_project.settings"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()

    def accepting() -> bool:
        assert process.poll() is None, "".join(lines)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        return False

    try:
        wait_for(accepting, "the server to accept", timeout=30)
        yield lines
    finally:
        process.terminate()
        process.wait(timeout=20)
        reader.join(timeout=10)


@pytest.mark.parametrize("case", list(CASES))
def test_one_access_line_per_websocket(case: str) -> None:
    host, (target, path, page), extra = CASES[case]
    port = free_port()
    cmd = command(host, target, port, extra)
    with watched(cmd, port) as lines:

        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=10) as response:
                return str(response.read().decode())

        before = get()
        with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10) as ws:
            ws.recv(timeout=10)
        wait_for(lambda: any(path in line for line in lines), f"an access line for {path}", timeout=15)
        if page == "/resources":  # "descriptors threads": the WebSocket's request (thread) is over
            threads = before.split()[1]
            # Up to close_timeout (10 s) if the closing handshake waits on a slow peer, plus the
            # thread's exit: 30 s (15 s was passed once under CI load on Python 3.13).
            wait_for(lambda: get().split()[1] == threads, "the WebSocket's request to end", timeout=30)
        else:  # one more round trip: a second line for the same request comes before this ends
            get()
    text = "".join(lines)
    mine = [line for line in lines if path in line]
    assert len(mine) == 1, text
    assert " 101 " in mine[0], text
    assert "Traceback" not in text and " 500 " not in text and " 000 " not in text, text


@pytest.mark.parametrize("case", ["flask run", "flask run --debug", "pywsgi flask", "gunicorn worker flask"])
def test_nothing_reaches_the_client_after_the_close(case: str) -> None:
    """The server's 101 for its log is never written: the Close is the last byte, then EOF."""
    host, (target, path, _), extra = CASES[case]
    port = free_port()
    with watched(command(host, target, port, extra), port) as lines:
        peer = Peer(("127.0.0.1", port))
        try:
            peer.upgrade(path)
            assert peer.read_close() == (1000, "counted")
            peer.send(frame(0x8, (1000).to_bytes(2, "big")))
            assert peer.at_eof()  # no "HTTP/1.1 101 ..." head, no 500 page
        finally:
            peer.close()
        wait_for(lambda: any(path in line for line in lines), f"an access line for {path}", timeout=15)
    assert "Traceback" not in "".join(lines)
