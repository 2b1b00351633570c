"""The ``websocket_client`` fixture logs in: it sends the cookies of ``websocket_http_client``.

Each class overrides the plugin's optional fixtures as a user's ``conftest.py`` would:
a Flask app behind Flask-Login, logged in through Flask's test client, and Django's
example project behind ``login_required``, logged in through ``django.test.Client``.
"""

from __future__ import annotations

from typing import Any

import pytest

from ignitia_sync import HandshakeError, Message, Router


class TestSettings:
    @pytest.fixture
    def websocket_app(self) -> Router:
        def echo(ws: Any) -> None:
            for message in ws:
                ws.send(message)

        return Router().websocket("/echo", echo)

    @pytest.fixture
    def websocket_settings(self) -> dict[str, Any]:
        return {"max_connections_per_ip": 1}

    def test_the_fixture_takes_the_server_settings(self, websocket_client):
        first = websocket_client.connect("/echo")
        with pytest.raises(HandshakeError) as refused:
            websocket_client.connect("/echo")  # one per address: websocket_settings reached the server
        assert refused.value.status == 503
        first.send_text("still here")
        assert first.recv(timeout=5) == Message.text("still here")


class TestFlaskLogin:
    @pytest.fixture
    def websocket_app(self) -> Any:
        """A Flask-Login app of this test's own: a server stopped by an earlier test stops the
        WebSocket routes of the app it served for the rest of the process (docs/testing.md)."""
        from flask import Flask
        from flask_login import LoginManager, UserMixin, current_user, login_required, login_user

        from ignitia_sync.flask import Sock

        app = Flask(__name__)
        app.secret_key = "test only"
        login_manager = LoginManager(app)
        sock = Sock(app)

        class User(UserMixin):
            def __init__(self, user_id: str) -> None:
                self.id = user_id

        login_manager.user_loader(User)

        @app.route("/login/<name>")
        def login(name: str) -> str:
            login_user(User(name))
            return "ok"

        @sock.route("/ws/private", decorators=[login_required])
        def private(ws: Any) -> None:
            ws.send(f"only for {current_user.id}")

        return app

    @pytest.fixture
    def websocket_http_client(self, websocket_app: Any) -> Any:
        return websocket_app.test_client()

    def test_the_fixture_connects_as_the_user_the_http_client_logged_in(self, websocket_client,
                                                                        websocket_http_client):
        with pytest.raises(HandshakeError) as refused:
            websocket_client.connect("/ws/private")
        assert refused.value.status == 401  # login_required, before any 101
        assert websocket_http_client.get("/login/alice").status_code == 200
        assert websocket_client.connect("/ws/private").recv(timeout=5) == Message.text("only for alice")


@pytest.fixture
def django_application(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """The example project on a fresh database; its variables and Django's test environment undone after."""
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    monkeypatch.setenv("DJANGO_DB", str(tmp_path / "db.sqlite3"))
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


class TestDjangoAuth:
    @pytest.fixture
    def websocket_app(self, django_application: Any) -> Any:
        return django_application

    @pytest.fixture
    def websocket_http_client(self, django_application: Any) -> Any:
        from django.test import Client

        return Client()

    def test_the_fixture_connects_as_the_user_the_http_client_logged_in(self, websocket_client,
                                                                        websocket_http_client):
        from django.contrib.auth.models import User

        with pytest.raises(HandshakeError) as refused:
            websocket_client.connect("/ws/private/")
        assert refused.value.status == 302  # login_required's redirect
        websocket_http_client.force_login(User.objects.get_or_create(username="erin")[0])
        assert websocket_client.connect("/ws/private/").recv(timeout=5) == Message.text("only for erin")
