"""HTTP views and WebSocket views side by side: one greets ``request.user``, one uses the session."""

from django.contrib.auth import login
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse

from ignitia_sync import Message, WebSocketConnection


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello {request.user}")


def sign_in(request: HttpRequest, name: str) -> HttpResponse:
    """A demo login by name (no password: an example, not an authentication scheme)."""
    user, _ = User.objects.get_or_create(username=name)
    login(request, user)
    request.session["visits"] = 1
    return HttpResponse("signed in")


def greet(request: HttpRequest, ws: WebSocketConnection, room: str) -> None:
    """``request.user`` and ``request.session`` came through Django's middleware chain."""
    ws.send_text(f"hello {request.user} in {room}, visits={request.session.get('visits')}")
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


def counter(request: HttpRequest, ws: WebSocketConnection) -> None:
    """Counts this session's WebSocket visits: the session is saved while the socket is open."""
    visits = request.session.get("visits", 0) + 1
    request.session["visits"] = visits
    request.session.save()
    ws.send_text(f"visit {visits}")


def private(request: HttpRequest, ws: WebSocketConnection) -> None:
    """Behind ``login_required``: anonymous upgrades get its redirect, never a 101."""
    ws.send_text(f"only for {request.user.get_username()}")
