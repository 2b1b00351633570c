from django.urls import path

from ignitia_sync import Message
from ignitia_sync.django import websocket_view


def echo(request, ws, room):        # Django's middleware has run: request.user, request.session
    for message in ws:              # ends when the client closes
        if isinstance(message, Message.Text):
            ws.send_text(f"{room}: {message.data}")


urlpatterns = [path("ws/echo/<str:room>/", websocket_view(echo))]
