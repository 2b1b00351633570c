"""Flask's and Django's routes check their handler when they are declared, as a Router does."""

from __future__ import annotations

import pytest


def test_a_sock_route_whose_handler_cannot_take_its_url_variable_fails_at_once():
    from flask import Flask

    from ignitia_sync.flask import Sock

    sock = Sock(Flask(__name__))
    with pytest.raises(TypeError) as refused:

        @sock.route("/ws/<int:room>")
        def chat(ws):
            pass

    assert str(refused.value).startswith("route '/ws/<int:room>': the handler chat(ws) cannot take the path "
                                         "parameter 'room'; write it as def chat(ws, room)")

    @sock.route("/ws/<room>/<path:rest>")
    def fine(ws, room, rest):
        pass


def test_a_django_view_whose_handler_cannot_take_request_and_ws_fails_at_once():
    from ignitia_sync.django import websocket_view

    def chat(ws):
        pass

    with pytest.raises(TypeError) as refused:
        websocket_view(chat)
    assert "cannot be called as chat(request, ws)" in str(refused.value)
    websocket_view(lambda request, ws, room: None)
