import os

import pytest

from ignitia_sync import HandshakeError, Message
from ignitia_sync.testing import TestClient


@pytest.fixture(scope="module")
def application(tmp_path_factory):
    """The project's WSGI application, on a fresh database (pytest-django's `db` fixture does this)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_project.settings"
    os.environ["DJANGO_DB"] = str(tmp_path_factory.mktemp("django") / "db.sqlite3")
    import django
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    call_command("migrate", verbosity=0)
    from examples.django_project.wsgi import application

    return application


def test_private_needs_a_login(application):
    from django.contrib.auth.models import User
    from django.test import Client

    http = Client()  # Django's test client: its cookies go with every upgrade
    with TestClient(application, http_client=http) as client:
        with pytest.raises(HandshakeError) as refused:
            client.connect("/ws/private/")
        assert refused.value.status == 302  # login_required's redirect, before any 101
        http.force_login(User.objects.create_user("dora"))
        assert client.connect("/ws/private/").recv(timeout=1) == Message.text("only for dora")
