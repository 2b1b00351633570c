"""WebSocket views are ordinary entries of ``urlpatterns``."""

from django.contrib.auth.decorators import login_required
from django.urls import path

from ignitia_sync.django import websocket_view

from . import views

urlpatterns = [
    path("", views.index),
    path("signin/<str:name>/", views.sign_in),
    path("ws/greet/<str:room>/", websocket_view(views.greet)),
    path("ws/counter/", websocket_view(views.counter)),
    path("ws/private/", login_required(websocket_view(views.private))),
]
