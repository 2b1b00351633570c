"""OpenTelemetry spans of a real server seen by a real client: the upgrade, the connection,
a refusal, a continued ``traceparent``; and a server without opentelemetry installed."""

from __future__ import annotations

import textwrap

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ignitia_sync import AuthMiddleware, Router, WebSocketConnection
from ignitia_sync.message import Text
from tests.conftest import url
from tests.otel_spans import named, spans
from tests.subprocess_server import python
from tests.waiting import wait_for

UPGRADE, CONNECTION = "WebSocket upgrade", "WebSocket connection"


def echo(ws: WebSocketConnection, room: str) -> None:
    for message in ws:
        ws.send(message)


@pytest.fixture
def exporter():
    exporter = spans()
    yield exporter
    exporter.clear()  # the provider stays (set once per process): later tests' spans pile up less


def test_an_upgrade_and_its_connection(serve, exporter):
    server = serve(Router().websocket("/rooms/:room", echo))
    with connect(url(server, "/rooms/42?token=secret")) as ws:
        ws.send("one")
        assert ws.recv(timeout=5) == "one"
        ws.send("two")
        assert ws.recv(timeout=5) == "two"
    wait_for(lambda: named(exporter, CONNECTION), "the connection's span")
    [upgrade] = named(exporter, UPGRADE)
    [connection] = named(exporter, CONNECTION)
    assert upgrade.kind == SpanKind.SERVER
    assert dict(upgrade.attributes) == {
        "http.request.method": "GET", "url.path": "/rooms/42", "http.route": "/rooms/:room",
        "client.address": "127.0.0.1", "http.response.status_code": 101,
    }  # the pattern, the path without its query
    assert upgrade.parent is None  # no traceparent came: a new trace
    assert connection.parent.span_id == upgrade.context.span_id
    assert connection.context.trace_id == upgrade.context.trace_id
    assert dict(connection.attributes) == {
        "http.route": "/rooms/:room", "websocket.close.code": 1000,
        "websocket.messages.received": 3, "websocket.messages.sent": 2,
    }  # the access line's counts: control frames included (the client's Close)
    assert upgrade.end_time <= connection.start_time  # the upgrade ends at the 101


def test_a_refused_upgrade_has_its_status_and_reason(serve, exporter):
    def never(request):
        return None  # AuthMiddleware: no user, 401

    server = serve(Router().websocket("/rooms/:room", echo, middleware=[AuthMiddleware(never)]))
    with pytest.raises(InvalidStatus) as refused:
        connect(url(server, "/rooms/1"))
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as missing:
        connect(url(server, "/nowhere"))
    assert missing.value.response.status_code == 404
    wait_for(lambda: len(named(exporter, UPGRADE)) == 2, "both refusals' spans")
    forbidden, not_found = named(exporter, UPGRADE)
    assert forbidden.attributes["http.response.status_code"] == 401
    assert forbidden.attributes["http.route"] == "/rooms/:room"
    assert forbidden.attributes["ignitia_sync.refusal.reason"]
    assert forbidden.status.status_code != StatusCode.ERROR  # a 4xx is the client's
    assert not_found.attributes["http.response.status_code"] == 404
    assert "http.route" not in not_found.attributes  # no route matched
    assert not_found.attributes["url.path"] == "/nowhere"
    assert not_found.attributes["ignitia_sync.refusal.reason"] == "no WebSocket route for this path"
    assert not named(exporter, CONNECTION)


def test_a_traceparent_from_the_client_is_continued(serve, exporter):
    server = serve(Router().websocket("/rooms/:room", echo))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with connect(url(server, "/rooms/7"), additional_headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
    wait_for(lambda: named(exporter, CONNECTION), "the connection's span")
    [upgrade] = named(exporter, UPGRADE)
    [connection] = named(exporter, CONNECTION)
    assert format(upgrade.context.trace_id, "032x") == trace_id
    assert format(upgrade.parent.span_id, "016x") == parent_id
    assert upgrade.parent.is_remote
    assert connection.context.trace_id == upgrade.context.trace_id


def test_without_opentelemetry_the_server_serves():
    program = textwrap.dedent("""
        from websockets.sync.client import connect
        from ignitia_sync import Router, Server
        from ignitia_sync._support import tracing

        def echo(ws):
            for message in ws:
                ws.send(message)

        assert tracing.ENABLED is False
        server = Server(Router().websocket("/echo", echo), ("127.0.0.1", 0))
        server.start_in_thread()
        host, port = server.address
        with connect(f"ws://{host}:{port}/echo") as ws:
            ws.send("still here")
            print(ws.recv(timeout=5))
        server.stop(timeout=5)
    """)
    done = python(program, hide=("opentelemetry",))  # as if not installed: importing it fails
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "still here"


def test_with_the_api_but_no_provider_no_span_is_made_yet_a_traceparent_still_reaches_the_handler():
    """opentelemetry-api is often installed by another package, with no SDK: its no-op spans
    cost each connection memory and CPU, so none is made, until the application sets a
    provider; a ``traceparent`` still gives the handler its context (for the calls it makes)."""
    program = textwrap.dedent("""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from websockets.sync.client import connect
        from ignitia_sync import Router, Server
        from ignitia_sync._support import tracing

        def trace_id(ws):
            for message in ws:
                ws.send(format(trace.get_current_span().get_span_context().trace_id, "032x"))

        started = []  # every span ignitia_sync starts
        start_span = tracing._tracer.start_span
        tracing._tracer.start_span = lambda *args, **kwargs: started.append(args[0]) or start_span(*args, **kwargs)

        assert tracing.ENABLED and not tracing.configured()
        assert tracing.start_upgrade("GET", "/", {}, "/") is None
        assert tracing.publish("lobby") is None
        delivered = []
        tracing.deliver("00-" + "1" * 32 + "-" + "2" * 16 + "-01", "lobby", lambda: delivered.append(1))
        assert delivered == [1]
        server = Server(Router().websocket("/id", trace_id), ("127.0.0.1", 0))
        server.start_in_thread()
        host, port = server.address
        remote = "4bf92f3577b34da6a3ce929d0e0e4736"
        with connect(f"ws://{host}:{port}/id") as ws:
            ws.send("?")
            print(ws.recv(timeout=5))
        with connect(f"ws://{host}:{port}/id", additional_headers={"traceparent": f"00-{remote}-00f067aa0ba902b7-01"}) as ws:
            ws.send("?")
            print(ws.recv(timeout=5))
        server.stop(timeout=5)
        assert started == [], started  # two connections, one continuing a trace: no span started
        trace.set_tracer_provider(TracerProvider())
        assert tracing.configured()
        span = tracing.start_upgrade("GET", "/", {}, "/")
        assert span is not None and span.is_recording() and started == ["WebSocket upgrade"]
        tracing.end_upgrade(span, 101)
    """)
    # OTEL_PYTHON_TRACER_PROVIDER (or any OTEL_ setting) in the environment would set a provider
    done = python(program, drop_env=("OTEL_",))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0" * 32, "4bf92f3577b34da6a3ce929d0e0e4736"]


def test_a_wsgi_upgrade_without_a_socket_to_take_has_one_span(exporter):
    from ignitia_sync.handlers import as_handler
    from ignitia_sync.wsgi import WebSocketHost

    host = WebSocketHost()
    environ = {  # a valid upgrade, from a WSGI server whose socket cannot be taken: 500
        "REQUEST_METHOD": "GET", "PATH_INFO": "/ws", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000", "HTTP_HOST": "example.com",
        "HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "Upgrade", "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    host.upgrade(environ, as_handler(lambda ws: None), {}, pattern="/ws")
    [upgrade] = named(exporter, UPGRADE)  # abandon() ended it; refused() made no second one
    assert upgrade.attributes["http.response.status_code"] == 500
    assert upgrade.attributes["http.route"] == "/ws"
    assert upgrade.status.status_code == StatusCode.ERROR
    assert host.stats()["refused"] == {500: 1}


@pytest.mark.expect_errors  # the handler's RuntimeError is logged: that is the 1011's cause
def test_the_handler_runs_inside_its_connection_span(serve, exporter):
    from opentelemetry import trace

    def looks_up(ws: WebSocketConnection, room: str) -> None:
        for message in ws:
            if not isinstance(message, Text):
                continue  # the client's Close
            with trace.get_tracer("the app").start_as_current_span("database query"):
                ws.send(message)
            if message.data == "fail":
                raise RuntimeError("the handler's own bug")

    server = serve(Router().websocket("/rooms/:room", looks_up))
    with connect(url(server, "/rooms/1")) as ws:
        ws.send("one")
        assert ws.recv(timeout=5) == "one"
    with connect(url(server, "/rooms/2")) as ws:
        ws.send("fail")
        assert ws.recv(timeout=5) == "fail"
        wait_for(lambda: ws.close_code is not None or len(named(exporter, CONNECTION)) == 2, "the 1011")
    wait_for(lambda: len(named(exporter, CONNECTION)) == 2, "both connections' spans")
    first, second = sorted(named(exporter, CONNECTION), key=lambda span: span.start_time)
    queries = sorted(named(exporter, "database query"), key=lambda span: span.start_time)
    assert [query.parent.span_id for query in queries] == [first.context.span_id, second.context.span_id]
    assert first.status.status_code != StatusCode.ERROR
    assert second.attributes["websocket.close.code"] == 1011
    assert second.status.status_code == StatusCode.ERROR
