import pytest

from ignitia_sync import HandshakeError, Message


@pytest.fixture
def websocket_app():  # here for this module; in conftest.py for every test
    from flask_login_app import app

    return app


@pytest.fixture
def websocket_http_client(websocket_app):  # Django: return django.test.Client()
    return websocket_app.test_client()


def test_hello_as_alice(websocket_client, websocket_http_client):  # the same HTTP client
    with pytest.raises(HandshakeError):
        websocket_client.connect("/ws/hello")  # 401: not logged in yet
    websocket_http_client.post("/login", data={"name": "alice"})
    assert websocket_client.connect("/ws/hello").recv(timeout=1) == Message.text("hello alice")
