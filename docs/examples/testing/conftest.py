import pytest


@pytest.fixture
def websocket_app():
    """The application that the `websocket_client` fixture serves (a Router, Flask or Django app)."""
    from chat import app

    return app
