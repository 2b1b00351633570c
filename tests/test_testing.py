"""TestClient: the application served in process by the real server code, over a socketpair.

These are also the tests of the examples (``examples.flask_app``, ``examples.django_project``,
``examples.rooms``) the way our users would write theirs.
"""

from __future__ import annotations

import pytest

from ignitia_sync import HandshakeError, Message, Router, WebSocketConnection
from ignitia_sync.sansio.http import Response
from ignitia_sync.testing import TestClient


def chat(ws: WebSocketConnection, room: str) -> None:
    ws.join(room)
    for message in ws:
        if isinstance(message, Message.Text):
            ws.registry.broadcast(Message.text(f"{ws.request.query.get('name')}: {message.data}"), room=room)


def router() -> Router:
    app = Router()
    app.websocket("/chat/:room", chat)
    app.websocket("/private", lambda ws: None, middleware=[lambda request: Response(403, "members only")])
    app.websocket("/proto", lambda ws: ws.send_text(str(ws.subprotocol)), subprotocols=["v2", "v1"])
    app.websocket("/small", lambda ws: list(ws), max_message_size=16)
    return app


def test_several_connections_talk_to_each_other_through_rooms():
    with TestClient(router()) as client:
        alice = client.connect("/chat/lobby?name=alice")
        bob = client.connect("/chat/lobby?name=bob")
        carol = client.connect("/chat/other?name=carol")
        alice.send_text("hi")
        assert alice.recv(timeout=1) == bob.recv(timeout=1) == Message.text("alice: hi")
        carol.expect_nothing(0.1)
        assert client.server.stats()["open_connections"] == 3


def test_a_refused_upgrade_carries_status_and_body():
    with TestClient(router()) as client, pytest.raises(HandshakeError) as refused:
        client.connect("/private")
    assert (refused.value.status, refused.value.body) == (403, "members only\n")


def test_subprotocols_limits_and_close_codes_are_the_real_ones():
    with TestClient(router()) as client:
        assert client.connect("/proto", subprotocols=["v1"]).recv(timeout=1) == Message.text("v1")
        ws = client.connect("/small")
        ws.send_text("x" * 17)
        assert ws.recv(timeout=1) == Message.close_with_reason(1009, "message too big")
        assert ws.recv(timeout=1) is None and ws.close_code == 1009


def test_expect_nothing_fails_when_something_comes():
    with TestClient(router()) as client:
        ws = client.connect("/chat/a?name=me")
        ws.send_text("echo")
        with pytest.raises(AssertionError, match="Text"):
            ws.expect_nothing(1)


def test_leaving_the_block_closes_what_is_open_with_a_closing_handshake():
    with TestClient(router()) as client:
        ws = client.connect("/chat/a?name=me")
    assert ws.close_code == 1000 and ws.closed
    assert client.server.stats()["close_codes"] == {1000: 1}


@pytest.fixture
def websocket_app() -> Router:
    return router()


def test_the_pytest_fixture(websocket_client):
    ws = websocket_client.connect("/chat/x?name=fixture")
    ws.send_text("hello")
    assert ws.recv(timeout=1) == Message.text("fixture: hello")


# -- Flask: the session comes from app.test_client() ----------------------------------------


def test_the_flask_example_shares_the_session_of_app_test_client():
    from examples.flask_app import app

    http = app.test_client()
    with TestClient(app, http_client=http) as client:
        assert client.connect("/ws/hello").recv(timeout=1) == Message.text("hello stranger")
        assert http.get("/signin/alice").status_code == 200
        assert client.connect("/ws/hello").recv(timeout=1) == Message.text("hello alice")
        echo = client.connect("/ws/echo")
        echo.send_bytes(b"\x00" * 100_000)
        assert echo.recv(timeout=1) == Message.binary(b"\x00" * 100_000)
        with pytest.raises(HandshakeError) as refused:
            client.connect("/nowhere")
        assert refused.value.status == 404
    with TestClient(app) as client:  # the next test serves the same app again
        assert client.connect("/ws/hello").recv(timeout=1) == Message.text("hello stranger")


# -- Django: a logged-in user of django.test.Client ---------------------------------------


@pytest.fixture(scope="module")
def django_project(tmp_path_factory):
    """The example project set up in this process; its variables and Django's test environment undone after."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
        patch.setenv("DJANGO_DB", str(tmp_path_factory.mktemp("django") / "db.sqlite3"))
        import django
        from django.core.management import call_command
        from django.test.utils import setup_test_environment, teardown_test_environment

        django.setup()
        setup_test_environment()
        try:
            call_command("migrate", verbosity=0)
            from examples.django_project.wsgi import application

            yield application
        finally:
            teardown_test_environment()


def test_the_django_example_sees_the_logged_in_user_and_session(django_project):
    from django.contrib.auth.models import User
    from django.test import Client

    http = Client()
    with TestClient(django_project, http_client=http) as client:
        with pytest.raises(HandshakeError) as refused:
            client.connect("/ws/private/")
        assert refused.value.status == 302  # login_required's redirect, before any 101
        assert dict(refused.value.headers)["location"].startswith("/login/?next=")
        http.force_login(User.objects.get_or_create(username="dora")[0])
        assert client.connect("/ws/private/").recv(timeout=1) == Message.text("only for dora")
        greet = client.connect("/ws/greet/lobby/")
        assert greet.recv(timeout=1) == Message.text("hello dora in lobby, visits=None")
        assert client.connect("/ws/counter/").recv(timeout=1) == Message.text("visit 1")
        assert client.connect("/ws/counter/").recv(timeout=1) == Message.text("visit 2")  # saved while open


def test_any_wsgi_app_wrapped_by_the_middleware():
    from ignitia_sync.wsgi import WebSocketMiddleware

    def plain_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain HTTP"]

    wrapped = WebSocketMiddleware(plain_app, Router().websocket("/ws/:name", lambda ws, name: ws.send_text(name)))
    with TestClient(wrapped) as client:
        assert client.connect("/ws/wsgi").recv(timeout=1) == Message.text("wsgi")
        with pytest.raises(HandshakeError) as refused:
            client.connect("/not-a-websocket-route")  # the WSGI app answers: no 101
        assert refused.value.status == 200 and refused.value.body == "plain HTTP"


# -- what a Flask app gets from Sock besides routes: guards and counters -------------------------


def test_sock_routes_take_middleware_and_rate_limits_and_sock_counts():
    from flask import Flask

    from ignitia_sync import OriginCheck, RateLimit, SlidingWindow
    from ignitia_sync.flask import Sock

    app = Flask(__name__)
    sock = Sock(app)

    @sock.route("/ws/guarded", middleware=[OriginCheck(["https://app.example"])],
                rate_limit=RateLimit(per_connection=lambda: SlidingWindow(2, 60.0), reply="slow down"))
    def guarded(ws):
        for message in ws:
            if isinstance(message, Message.Text):
                ws.send_text(f"got {message.data}")

    with TestClient(app) as client:
        with pytest.raises(HandshakeError) as refused:
            client.connect("/ws/guarded", headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        ws = client.connect("/ws/guarded", headers={"Origin": "https://app.example"})
        for n in range(3):
            ws.send_text(str(n))
        assert [ws.recv(timeout=1).data for _ in range(3)] == ["got 0", "got 1", "slow down"]
        ws.close_and_wait(4000, "done")
        stats = sock.stats()
    assert stats["refused"] == {403: 1} and stats["close_codes"] == {4000: 1}
    assert stats["total_connections"] == 1 and stats["open_connections"] == 0
    assert stats["messages_in"] == 4 and stats["messages_out"] == 3  # in: 3 texts and our Close


def test_django_websocket_views_take_middleware(django_project):
    from django.urls import path

    from examples.django_project import urls
    from ignitia_sync import OriginCheck
    from ignitia_sync.django import websocket_view

    def hello(request, ws):
        ws.send_text("hello")

    urls.urlpatterns.append(path("ws/guarded/", websocket_view(hello, middleware=[OriginCheck(["https://ok.example"])])))
    try:
        with TestClient(django_project) as client:
            with pytest.raises(HandshakeError) as refused:
                client.connect("/ws/guarded/", headers={"Origin": "https://evil.example"})
            assert refused.value.status == 403
            assert client.connect("/ws/guarded/", headers={"Origin": "https://ok.example"}).recv(timeout=1).data == "hello"
    finally:
        urls.urlpatterns.pop()


def test_recv_json_refuses_a_binary_message_that_is_not_utf8():
    from ignitia_sync import MessageDecodeError

    app = Router().websocket("/bin", lambda ws: ws.send_bytes(b"\xff\xfe"))
    with TestClient(app) as client:
        with pytest.raises(MessageDecodeError):
            client.connect("/bin").recv_json(timeout=1)
        with pytest.raises(ValueError, match="starts with"):
            client.connect("bin")


# -- one host under every host: ws.host, limits -------------------------------------------------


def test_ws_host_is_the_host_that_serves_it_under_every_host():
    from flask import Flask

    from ignitia_sync.flask import Sock
    from ignitia_sync.wsgi import WebSocketMiddleware

    def describe(ws, **params):
        ws.send_text(f"{type(ws.host).__name__} {ws.server is ws.host} {ws.host.stats()['open_connections']}")

    app = Flask(__name__)
    sock = Sock(app)
    sock.route("/ws/who")(describe)
    wrapped = WebSocketMiddleware(lambda environ, start_response: [], Router().websocket("/ws/who", describe))
    router = Router().websocket("/ws/who", describe)
    for served, expected in ((router, "Server"), (app, "WebSocketHost"), (wrapped, "WebSocketMiddleware")):
        with TestClient(served) as client:
            assert client.connect("/ws/who").recv(timeout=5) == Message.text(f"{expected} True 1")


def test_connection_limits_hold_under_a_wsgi_host_too():
    from ignitia_sync.wsgi import WebSocketMiddleware

    def hold(ws):
        ws.recv()

    wrapped = WebSocketMiddleware(lambda environ, start_response: [], Router().websocket("/ws", hold),
                                  max_connections_per_ip=1)
    with TestClient(wrapped) as client:
        first = client.connect("/ws")
        with pytest.raises(HandshakeError) as refused:
            client.connect("/ws")
        assert (refused.value.status, refused.value.body) == (503, "too many connections from your address\n")
        first.close_and_wait()
        client.connect("/ws").close_and_wait()  # its place was given back
    assert wrapped.stats()["refused"] == {503: 1}
