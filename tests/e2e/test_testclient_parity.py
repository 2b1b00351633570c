"""``TestClient`` answers what ``ignitia-sync`` answers, for a Router, a WSGI app, Flask and Django.

The test client serves the app with the real server code over a socketpair; its client side
accepts any message size by default, so a message the app's limits allow and the app sends
(here a 2 MiB echo, over the client library's usual 1 MiB) arrives as it does from a real server.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.sync.client import connect as real_connect

from ignitia_sync import HandshakeError, Router
from ignitia_sync.testing import TestClient
from tests.apps import echo
from tests.subprocess_server import free_port, host_command, running
from tests.wire import Peer, handshake_bytes

TWO_MIB = os.urandom(2 << 20)


ROUTER = Router().websocket("/echo", echo, max_message_size=8 << 20)


@pytest.fixture(scope="module")
def django_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:  # the variables are this module's only
        patch.setenv("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
        patch.setenv("DJANGO_DB", str(tmp_path_factory.mktemp("django") / "db.sqlite3"))
        import django

        django.setup()
        import ignitia_sync.django
        from examples.django_project.wsgi import application

        yield application
    # The process's WebSocket host of Django: a later test (test_testing.py) gets a new one, not
    # this one, which a server stopped meanwhile would have shut down with every WSGI host.
    if ignitia_sync.django._host is not None:
        ignitia_sync.django._host.shutdown()
        ignitia_sync.django._host = None


def fresh(module: str) -> Any:
    """The module's ``app``, made anew: a server stopped by an earlier test shuts down every WSGI
    host of the process, the app of a module imported before included."""
    return importlib.reload(importlib.import_module(module)).app


def flask_app() -> Any:
    return fresh("tests.scripts.flask_app")


def wsgi_app() -> Any:
    return fresh("tests.scripts.wsgi_app")


@pytest.mark.parametrize(
    ("app", "path", "greeting"),
    [
        (lambda: ROUTER, "/echo", None),
        (wsgi_app, "/ws/echo", None),
        (flask_app, "/ws/echo", None),
        ("django", "/ws/greet/lobby/", "hello AnonymousUser in lobby, visits=None"),
    ],
    ids=["router", "wsgi-middleware", "flask", "django"],
)
def test_a_message_the_app_allows_over_1_mib_comes_back_through_the_test_client(
    request: pytest.FixtureRequest, app: Callable[[], Any] | str, path: str, greeting: str | None
):
    served = request.getfixturevalue("django_app") if app == "django" else app()  # type: ignore[operator]
    with TestClient(served) as client:
        ws = client.connect(path)
        if greeting is not None:
            assert ws.recv(timeout=5).data == greeting
        ws.send_bytes(TWO_MIB)
        answer = ws.recv(timeout=10)
        assert answer is not None and answer.data == TWO_MIB, (answer, ws.close_code)


def test_a_test_connection_still_takes_a_limit_of_its_own():
    with TestClient(ROUTER) as client:
        ws = client.connect("/echo", max_message_size=1 << 20)
        ws.send_bytes(TWO_MIB)
        assert ws.recv(timeout=10) is None and ws.close_code == 1009  # the client's own refusal


@pytest.fixture(scope="module")
def django_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {"DJANGO_SETTINGS_MODULE": "examples.django_project.settings",
           "DJANGO_DB": str(tmp_path_factory.mktemp("django-served") / "db.sqlite3")}
    with running(host_command("ignitia-sync", "examples.django_project.wsgi:application", port), port, env):
        yield f"127.0.0.1:{port}"


def through_the_server(base: str, path: str) -> tuple[int, str | None, bool]:
    """From ``ignitia-sync``: (101 or the refusal's status, the greeting, whether 2 MiB came back)."""
    host, port = base.split(":")
    peer = Peer((host, int(port)))  # the status as sent (a client library would follow a redirect)
    peer.send(handshake_bytes(path))
    status, _ = peer.read_head()
    peer.close()
    if status != 101:
        return status, None, False
    with real_connect(f"ws://{base}{path}", max_size=None, open_timeout=10) as ws:
        greeting = str(ws.recv(timeout=10))
        ws.send(TWO_MIB)
        return 101, greeting, ws.recv(timeout=10) == TWO_MIB


def through_the_test_client(app: Any, path: str) -> tuple[int, str | None, bool]:
    """The same, from :class:`TestClient`."""
    with TestClient(app) as client:
        try:
            ws = client.connect(path)
        except HandshakeError as refused:
            return refused.status, None, False
        greeting = ws.recv(timeout=10).data
        ws.send_bytes(TWO_MIB)
        answer = ws.recv(timeout=10)
        return 101, greeting, answer is not None and answer.data == TWO_MIB


@pytest.mark.parametrize("path", ["/ws/greet/lobby/", "/ws/private/"])
def test_the_test_client_answers_a_django_project_as_ignitia_sync_does(django_app, django_server, path):
    served = through_the_server(django_server, path)
    assert served[0] in (101, 302)  # the view's answer, and login_required's
    assert through_the_test_client(django_app, path) == served
