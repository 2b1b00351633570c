"""HTTP views and WebSocket views side by side."""

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.urls import path

from ignitia_sync import Message
from ignitia_sync.django import websocket_view


def sign_in(request, name):
    user, _ = User.objects.get_or_create(username=name)
    login(request, user)
    request.session["visits"] = 1
    return HttpResponse("signed in")


def index(request):
    return HttpResponse(f"hello {request.user}")


def greet(request, ws, room):
    ws.send_text(f"hello {request.user} in {room}, visits={request.session.get('visits')}")
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


def private(request, ws):
    ws.send_text(f"only for {request.user.username}")


urlpatterns = [
    path("", index),
    path("signin/<str:name>/", sign_in),
    path("ws/greet/<str:room>/", websocket_view(greet)),
    path("ws/private/", login_required(websocket_view(private))),
]
