"""Settings and URLs of the example project with ``ATOMIC_REQUESTS`` on: each HTTP view runs in a transaction.

    export DJANGO_SETTINGS_MODULE=tests.scripts.django_atomic
    ignitia-sync examples.django_project.wsgi:application

A WebSocket view that writes with the ORM, an HTTP view that reads what is committed.
"""

from __future__ import annotations

from django.db import close_old_connections, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import path

from examples.django_project.settings import *  # noqa: F403 (the project's settings, then ours)
from examples.django_project.settings import DATABASES as PROJECT_DATABASES
from ignitia_sync import Message, WebSocketConnection
from ignitia_sync.django import websocket_view

ROOT_URLCONF = __name__
DATABASES = {"default": {**PROJECT_DATABASES["default"], "ATOMIC_REQUESTS": True}}


def users(request: HttpRequest) -> HttpResponse:
    """The users, as a request in its own transaction sees them."""
    from django.contrib.auth.models import User  # not at import: this module is the settings too

    return HttpResponse(" ".join(User.objects.order_by("id").values_list("username", flat=True)))


def register(request: HttpRequest, ws: WebSocketConnection) -> None:
    """Each message creates a user, committed at once: the view runs in no request transaction."""
    from django.contrib.auth.models import User

    ws.send_text(f"in a transaction: {transaction.get_connection().in_atomic_block}")
    for message in ws:
        if isinstance(message, Message.Text):
            close_old_connections()  # what a long-lived handler does between uses (CONN_MAX_AGE)
            User.objects.create(username=message.data)
            ws.send_text(f"created {message.data}: {User.objects.count()} users")
            close_old_connections()


urlpatterns = [
    path("users/", users),
    path("ws/register/", websocket_view(register)),
]
