"""Settings and URLs of the Django column of the upgrade table: the example project, other routes.

    DJANGO_SETTINGS_MODULE=tests.scripts.upgrade_table_django \\
        python examples/django_project/manage.py runserver 127.0.0.1:8000

The routes and settings of :mod:`tests.scripts.upgrade_table_app` as WebSocket views; the
host-wide settings come from ``IGNITIA_SYNC``, as a Django project sets them.
"""

from __future__ import annotations

from django.urls import path

from examples.django_project.settings import *  # noqa: F403 (the project's settings, then ours)
from ignitia_sync import Message
from ignitia_sync.django import websocket_view
from tests.scripts.upgrade_table_app import HOST_SETTINGS, guard

ROOT_URLCONF = __name__
IGNITIA_SYNC = dict(HOST_SETTINGS)
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}  # never touched


def echo(request, ws):
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


urlpatterns = [
    path("ws/echo", websocket_view(echo)),
    path("ws/guarded", websocket_view(echo, middleware=[guard()])),
]
