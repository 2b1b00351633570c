"""Django with ``ATOMIC_REQUESTS = True``: WebSocket views run outside the request's transaction.

A WebSocket view lasts as long as its socket: inside ``ATOMIC_REQUESTS``' transaction its
writes would stay uncommitted (and locked) until it ends, and ``close_old_connections()``
would break the transaction under it. Served for real by ``ignitia-sync`` and gunicorn.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from tests.subprocess_server import ROOT, free_port, host_command, running

MANAGE = os.path.join(ROOT, "examples", "django_project", "manage.py")
SETTINGS = "tests.scripts.django_atomic"


@pytest.fixture(params=["ignitia-sync", "gunicorn"])
def base(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    env = {"DJANGO_SETTINGS_MODULE": SETTINGS, "DJANGO_DB": str(tmp_path / "db.sqlite3")}
    subprocess.run([sys.executable, MANAGE, "migrate", "-v", "0"], cwd=ROOT, check=True, timeout=120,
                   env=dict(os.environ, **env))
    port = free_port()
    with running(host_command(request.param, "examples.django_project.wsgi:application", port), port, env):
        yield f"127.0.0.1:{port}"


def users(base: str) -> str:
    with urllib.request.urlopen(f"http://{base}/users/", timeout=10) as response:
        return str(response.read().decode())


def test_a_websocket_views_orm_writes_commit_while_its_socket_is_open(base):
    with connect(f"ws://{base}/ws/register/", open_timeout=10) as ws:
        assert ws.recv(timeout=10) == "in a transaction: False"
        ws.send("ann")
        assert ws.recv(timeout=10) == "created ann: 1 users"
        assert users(base) == "ann"  # another request sees it now, not when the socket closes
        ws.send("bob")
        assert ws.recv(timeout=10) == "created bob: 2 users"
        assert users(base) == "ann bob"
