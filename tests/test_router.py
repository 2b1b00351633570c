"""Path patterns, parameters, decorators and options."""

from __future__ import annotations

import pytest

from ignitia_sync import Router, websocket_message_handler
from ignitia_sync.handlers import Handler, MessageHandler


def nothing(ws, **params):
    pass


def test_static_colon_brace_and_rest_patterns():
    app = (
        Router()
        .websocket("/echo", nothing)
        .websocket("/chat/:user_id", nothing)
        .websocket("/rooms/{room}/users/:user", nothing)
        .websocket("/files/*rest", nothing)
    )
    assert app.match("/echo")[1] == {}
    assert app.match("/chat/alice")[1] == {"user_id": "alice"}
    assert app.match("/rooms/r1/users/bob")[1] == {"room": "r1", "user": "bob"}
    assert app.match("/files/a/b/c.txt")[1] == {"rest": "a/b/c.txt"}
    assert app.match("/files/")[1] == {"rest": ""}
    assert app.match("/chat/") is None
    assert app.match("/chat/a/b") is None
    assert app.match("/echo/") is None


def test_decorator_websocket_fn_and_handler_kinds():
    app = Router()

    @app.websocket("/deco")
    def deco(ws):
        pass

    def on_message(ws, message):
        pass

    app.websocket_fn("/fn", nothing).websocket("/msg", websocket_message_handler(on_message))
    routes = {route.pattern: route for route in app.routes}
    assert deco.__name__ == "deco"  # the decorator returns the function
    assert type(routes["/deco"].handler) is Handler
    assert isinstance(routes["/msg"].handler, MessageHandler)


@pytest.mark.parametrize("pattern", ["nope", "/a/*rest/b", "/:x/:x", "/*", "/:1x"])
def test_malformed_patterns_are_refused(pattern):
    with pytest.raises(ValueError):
        Router().websocket(pattern, nothing)


def test_duplicates_and_unknown_options_are_refused():
    app = Router().websocket("/a", nothing)
    with pytest.raises(ValueError):
        app.websocket("/a", nothing)
    with pytest.raises(TypeError):
        app.websocket("/b", nothing, max_size=3)
    with pytest.raises(TypeError):
        app.websocket("/c", "not callable")  # type: ignore[call-overload]


def test_route_options_are_kept():
    app = Router().websocket("/a", nothing, subprotocols=["v1"], max_message_size=10)
    assert app.routes[0].options == {"subprotocols": ["v1"], "max_message_size": 10}


# -- a handler that could not take its arguments fails when the route is registered ----------


@pytest.mark.parametrize(
    ("pattern", "handler", "says"),
    [
        ("/a/:room", lambda ws: None, "cannot take the path parameter 'room'; write it as def <lambda>(ws, room)"),
        ("/a/{x}/:y", lambda ws, x: None, "cannot take the path parameter 'y'; write it as def <lambda>(ws, x, y)"),
        ("/plain", lambda: None, "cannot be called as <lambda>(ws)"),
        ("/m/:room", websocket_message_handler(lambda ws, room: None),
         "cannot be called as <lambda>(ws, message, room)"),
    ],
)
def test_a_handler_that_cannot_take_its_arguments_is_refused_at_registration(pattern, handler, says):
    with pytest.raises(TypeError) as refused:
        Router().websocket(pattern, handler)
    message = str(refused.value)
    assert message.startswith(f"route {pattern!r}: the handler ") and says in message and "\n" not in message


def test_handlers_that_can_take_their_arguments_are_accepted():
    def keywords(ws, **params):
        pass

    def defaults(ws, room, page="1"):
        pass

    Router().websocket("/a/:room", keywords).websocket("/b/:room", defaults).websocket("/c/*rest", lambda ws, rest: None)
