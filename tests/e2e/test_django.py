"""Django with WebSocket views (ignitia_sync.django), served for real in a subprocess.

The project is ``examples/django_project``, served by ``ignitia-sync``, gunicorn and
``manage.py runserver`` (with its autoreloader).
"""

from __future__ import annotations

import http.cookiejar
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.sync.client import connect

from tests.subprocess_server import ROOT, free_port, host_command, running
from tests.waiting import wait_for
from tests.wire import Peer, frame, handshake_bytes

MANAGE = os.path.join(ROOT, "examples", "django_project", "manage.py")
SETTINGS = "examples.django_project.settings"


def command(host: str, port: int) -> list[str]:
    if host == "runserver":  # Django's development server, autoreloader on (its default)
        return [sys.executable, MANAGE, "runserver", f"127.0.0.1:{port}"]
    return host_command(host, "examples.django_project.wsgi:application", port)


@pytest.fixture
def project_env(tmp_path) -> dict[str, str]:
    env = {"DJANGO_SETTINGS_MODULE": SETTINGS, "DJANGO_DB": str(tmp_path / "db.sqlite3")}
    subprocess.run([sys.executable, MANAGE, "migrate", "-v", "0"], cwd=ROOT, check=True, timeout=120,
                   env=dict(os.environ, **env))
    return env


@pytest.fixture(params=["ignitia-sync", "gunicorn", "runserver"])
def base(request: pytest.FixtureRequest, project_env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    with running(command(request.param, port), port, project_env):
        yield f"127.0.0.1:{port}"


def signed_in_cookie(base: str, name: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"http://{base}/signin/{name}/", timeout=10) as response:
        assert response.read() == b"signed in"
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


def test_http_and_websocket_views_share_the_middleware_chain(base):
    with urllib.request.urlopen(f"http://{base}/", timeout=10) as response:
        assert response.read() == b"hello AnonymousUser"
    cookie = signed_in_cookie(base, "carol")
    with connect(f"ws://{base}/ws/greet/lobby/", additional_headers={"Cookie": cookie}, max_size=None) as ws:
        assert ws.recv(timeout=10) == "hello carol in lobby, visits=1"  # request.user and request.session
        big = os.urandom(4 << 20)
        ws.send(big)
        assert ws.recv(timeout=30) == big


def test_login_required_answers_before_the_upgrade(base):
    host, port = base.split(":")
    peer = Peer((host, int(port)))
    peer.send(handshake_bytes("/ws/private/"))
    status, head = peer.read_head()
    assert status == 302 and "Location: /login/?next=/ws/private/" in head  # an HTTP answer, no 101
    peer.close()
    cookie = signed_in_cookie(base, "dave")
    with connect(f"ws://{base}/ws/private/", additional_headers={"Cookie": cookie}) as ws:
        assert ws.recv(timeout=10) == "only for dave"


def test_a_plain_request_to_a_websocket_view_gets_426(base):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://{base}/ws/greet/lobby/", timeout=10)
    assert info.value.code == 426


def test_the_session_can_be_saved_while_the_socket_is_open(base):
    cookie = signed_in_cookie(base, "erin")
    for expected in ("visit 2", "visit 3"):
        with connect(f"ws://{base}/ws/counter/", additional_headers={"Cookie": cookie}) as ws:
            assert ws.recv(timeout=10) == expected


def test_bytes_sent_right_after_the_head_are_not_lost(base):
    host, port = base.split(":")
    peer = Peer((host, int(port)))
    peer.send(handshake_bytes("/ws/greet/lobby/") + frame(0x1, b"pipelined"))
    assert peer.read_head()[0] == 101
    assert peer.read_frame()[:2] == (1, b"hello AnonymousUser in lobby, visits=None")
    assert peer.read_frame()[:2] == (1, b"pipelined")
    peer.close()


def children(pid: int) -> list[int]:
    """The processes ``pid`` started and that still run (Linux)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except FileNotFoundError:
        return []


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_runserver_reload_closes_websockets_with_1001_and_serves_again(project_env, tmp_path):
    # A copy of the project, first on the path: the reload touches only the copy's files.
    shutil.copytree(os.path.join(ROOT, "examples", "django_project"), tmp_path / "examples" / "django_project",
                    ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    (tmp_path / "examples" / "__init__.py").write_text("")
    views = tmp_path / "examples" / "django_project" / "views.py"
    port = free_port()
    runserver = [sys.executable, str(tmp_path / "examples" / "django_project" / "manage.py"), "runserver",
                 f"127.0.0.1:{port}"]
    env = dict(project_env, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    with running(runserver, port, env) as reloader:  # the reloader; it runs the server in a child
        with connect(f"ws://127.0.0.1:{port}/ws/greet/lobby/") as ws:
            assert ws.recv(timeout=10).startswith("hello AnonymousUser")
            [old] = children(reloader.pid)
            time.sleep(1.5)  # the StatReloader compares modification times once a second
            os.utime(views)  # what saving the file in an editor does
            with pytest.raises(ClientClosed):
                ws.recv(timeout=20)
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1001  # not 1006
        # Until the old process has exited it still accepts: a 503 (shutting down), or a
        # connection cut when it exits. Wait for what a retrying client waits for: the old
        # process gone and the new one listening; then the first try must be served.
        wait_for(lambda: old not in children(reloader.pid), "the old server process to exit", timeout=30)
        wait_for(lambda: children(reloader.pid) and accepts(port), "the reloaded server to listen", timeout=30)
        with connect(f"ws://127.0.0.1:{port}/ws/greet/again/", open_timeout=10) as ws:
            assert ws.recv(timeout=10).startswith("hello AnonymousUser in again")
