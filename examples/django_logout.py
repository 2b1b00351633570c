"""Sign out everywhere, with Django: a logout closes the user's WebSockets in every process (docs/operating.md).

A whole project in one file (settings, views, URLs, WSGI application):

    export SECRET_KEY=... REDIS_URL=redis://127.0.0.1:6379/0 DJANGO_DB=/srv/notes.sqlite3
    python examples/django_logout.py migrate
    gunicorn -k ignitia_sync.gunicorn.Worker -w 4 examples.django_logout:application

Each WebSocket is made a connection of its user (``registry.set_user(ws, str(request.user.pk))``:
one user may have many, in any process). Django sends ``user_logged_out`` from ``logout()``,
wherever it is called (``POST /logout/``, the admin's logout, a password change view that signs
out); the receiver calls ``host().registry.disconnect(user_id, 1008, "logged out")``, which
closes the user's connections of this process at once and, through Redis, those of the others.
"""

import os
import sys

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        SECRET_KEY=os.environ["SECRET_KEY"],  # the same in every process
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "ignitia_sync.django",
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
        ],
        MIDDLEWARE=[  # a site with forms adds CsrfViewMiddleware (and a token in its forms)
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("DJANGO_DB", "notes.sqlite3")}
        },
        USE_TZ=True,
        IGNITIA_SYNC_BACKPLANE=os.environ.get("REDIS_URL"),  # None: one process only
    )
    django.setup()

from django.contrib.auth import login, logout, user_logged_out
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.wsgi import get_wsgi_application
from django.dispatch import receiver
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.http import require_POST

from ignitia_sync import Message
from ignitia_sync.django import host, websocket_view


@require_POST
def sign_in(request):
    """A demo sign-in by name: check a password here (``django.contrib.auth.authenticate``)."""
    user, _ = User.objects.get_or_create(username=request.POST["name"])
    login(request, user)
    return HttpResponse("signed in")


@require_POST
@login_required
def sign_out(request):
    logout(request)  # sends user_logged_out: see below
    return HttpResponse("signed out")


@receiver(user_logged_out)
def close_their_websockets(sender, request, user, **kwargs):
    """Every logout, whichever view calls ``logout()``: the user's connections, in every process."""
    if user is not None:
        host().registry.disconnect(str(user.pk), 1008, "logged out")


def notes(request, ws):
    ws.registry.set_user(ws, str(request.user.pk))  # one of the user's connections (there may be many)
    ws.send_text(f"hello {request.user.get_username()}")
    for message in ws:
        if isinstance(message, Message.Text):
            ws.send_text(f"noted: {message.data}")


urlpatterns = [
    path("login/", sign_in),
    path("logout/", sign_out),
    path("ws/notes/", login_required(websocket_view(notes))),  # anonymous upgrades get the redirect
]

application = get_wsgi_application()

if __name__ == "__main__":  # python examples/django_logout.py migrate
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
