import pytest
from flask_login_app import app

from ignitia_sync import HandshakeError, Message
from ignitia_sync.testing import TestClient


def test_hello_needs_a_login():
    http = app.test_client()  # Flask's test client: its cookies go with every upgrade
    with TestClient(app, http_client=http) as client:
        with pytest.raises(HandshakeError) as refused:
            client.connect("/ws/hello")
        assert refused.value.status == 401  # login_required answered, before any 101
        http.post("/login", data={"name": "alice"})
        assert client.connect("/ws/hello").recv(timeout=1) == Message.text("hello alice")
