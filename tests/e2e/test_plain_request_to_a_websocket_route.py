"""A plain HTTP request (no Upgrade) for a WebSocket route gets 426 under every host, Flask and Django alike.

RFC 9110 asks a 426 to name the protocol (``Upgrade: websocket``): it does wherever the WSGI
server lets an application send that hop-by-hop header (gunicorn, pywsgi under ``ignitia-sync``,
Werkzeug); Django's ``runserver`` (wsgiref) forbids any, so there the 426 comes without it.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.subprocess_server import ROOT, free_port, host_command, running
from tests.wire import Peer, handshake_bytes

FLASK = "tests.scripts.flask_app:app"
DJANGO = "examples.django_project.wsgi:application"
MANAGE = os.path.join(ROOT, "examples", "django_project", "manage.py")


def plain_get(base: str, path: str) -> tuple[int, str | None, bytes]:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://{base}{path}", timeout=10)
    return info.value.code, info.value.headers.get("Upgrade"), info.value.read()


@pytest.fixture(params=["ignitia-sync", "gunicorn", "werkzeug"])
def flask_base(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    with running(host_command(request.param, FLASK, port), port):
        yield f"127.0.0.1:{port}"


def test_flask_answers_a_plain_request_for_a_sock_route_with_426(flask_base):
    for path in ("/ws/echo", "/ws/room/kitchen", "/ws/count/3"):  # app and blueprint routes alike
        assert plain_get(flask_base, path) == (426, "websocket", b"this URL speaks WebSocket\n")


def test_flask_keeps_werkzeugs_400_for_an_upgrade_to_an_http_route(flask_base):
    host, port = flask_base.split(":")
    peer = Peer((host, int(port)))
    peer.send(handshake_bytes("/"))  # "/" is an HTTP view
    status, head = peer.read_head()
    assert status == 400 and "Upgrade:" not in head, head
    peer.close()


@pytest.fixture(params=["ignitia-sync", "gunicorn", "runserver"])
def django_host(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[str, str]]:
    port = free_port()
    env = {"DJANGO_SETTINGS_MODULE": "examples.django_project.settings",
           "DJANGO_DB": str(tmp_path / "db.sqlite3")}
    if request.param == "runserver":
        command = [sys.executable, MANAGE, "runserver", "--noreload", f"127.0.0.1:{port}"]
    else:
        command = host_command(request.param, DJANGO, port)
    with running(command, port, env):
        yield request.param, f"127.0.0.1:{port}"


def test_django_answers_a_plain_request_for_a_websocket_view_with_426(django_host):
    host, base = django_host
    upgrade = None if host == "runserver" else "websocket"  # wsgiref refuses hop-by-hop headers
    assert plain_get(base, "/ws/greet/lobby/") == (426, upgrade, b"this URL speaks WebSocket\n")
