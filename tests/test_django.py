"""Django with WebSocket views (ignitia_sync.django), served for real in a subprocess."""

from __future__ import annotations

import http.cookiejar
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from .subprocess_server import ROOT, free_port, host_command, running
from .wire import Peer, handshake_bytes


@pytest.fixture(params=["ignitia-sync", "gunicorn"])
def base(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    env = {"DJANGO_SETTINGS_MODULE": "tests.django_project.settings", "IGNITIA_TEST_DB": str(tmp_path / "db.sqlite3")}
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v", "0"], cwd=ROOT, check=True, timeout=120,
                   env=dict(os.environ, PYTHONPATH=ROOT, **env))
    port = free_port()
    with running(host_command(request.param, "tests.django_project.wsgi:application", port), port, env):
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
