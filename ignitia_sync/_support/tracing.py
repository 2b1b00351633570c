"""OpenTelemetry spans, when ``opentelemetry-api`` is installed (``pip install 'ignitia_sync[tracing]'``).

Decided once, at import time: without the package :data:`ENABLED` is False and every
function here returns at once (None), so the hosts pay one flag test per upgrade. The spans
go to whatever tracer provider the application configured. While it has configured none
(the API is often installed by another package, with no SDK), no span is started either
(:func:`configured`, asked per upgrade, publish and delivery): an upgrade carrying a
``traceparent`` gets that remote context instead, which the handler runs in, so that the
calls it makes carry the trace on.

Spans (names and attributes in ``docs/monitoring.md``, "Tracing"):

* ``WebSocket upgrade`` (SERVER): one per upgrade request, from :meth:`Host.open` to the 101
  or the refusal; it continues a W3C ``traceparent`` the request carries;
* ``WebSocket connection`` (SERVER): one per connection, from the 101 to the closed socket,
  a child of its upgrade span; the handler runs inside it (:func:`current`), so the spans an
  application makes there (a database query, a broadcast's publish) are its children;
* ``WebSocket broadcast publish`` (PRODUCER) and ``WebSocket broadcast deliver`` (CONSUMER):
  a broadcast that crosses the Redis backplane with ``trace_context=True``; the deliver span
  *links* to the publish span (OpenTelemetry's advice for messaging), it is not its child.

Nothing here runs per message.

Example:
    >>> span = start_upgrade("GET", "/chat/7", {}, "/chat/:room")
    >>> end_upgrade(span, 404, "no route")  # None (nothing to end) when tracing is off
    >>> isinstance(ENABLED, bool)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

try:  # optional: decided once
    from opentelemetry import propagate, trace
    from opentelemetry.trace import (
        Link,
        NoOpTracerProvider,
        ProxyTracerProvider,
        SpanKind,
        Status,
        StatusCode,
    )
except ImportError:  # not installed (or blocked): tracing stays off
    ENABLED = False
else:
    ENABLED = True
    _tracer = trace.get_tracer("ignitia_sync")  # a proxy: follows a provider set later

__all__ = [
    "ENABLED", "configured", "current", "deliver", "end_connection", "end_upgrade", "publish", "start_connection",
    "start_upgrade",
]

#: Span names.
UPGRADE, CONNECTION, PUBLISH, DELIVER = (
    "WebSocket upgrade", "WebSocket connection", "WebSocket broadcast publish", "WebSocket broadcast deliver",
)


def start_upgrade(method: str, path: str, headers: Mapping[str, str], route: str, client: str = "") -> Any:
    """Start the span of one upgrade request; None when tracing is off.

    ``headers``: the request's (a ``traceparent`` there is continued). ``route``: the route
    pattern (``http.route``), ``path`` the path without query (``url.path``).

    Example:
        >>> span = start_upgrade("GET", "/", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}, "/")
        >>> end_upgrade(span, 101)  # ended with its status
    """
    if not ENABLED:
        return None
    parent = propagate.extract(headers) if "traceparent" in headers else None
    if not configured():  # nothing records: no span (it would cost memory and time), but
        return None if parent is None else trace.get_current_span(parent)  # the remote context
    attributes = {"http.request.method": method, "url.path": path}
    if route:
        attributes["http.route"] = route
    if client:
        attributes["client.address"] = client
    return _tracer.start_span(UPGRADE, context=parent, kind=SpanKind.SERVER, attributes=attributes)


def end_upgrade(span: Any, status: int | None, reason: str = "") -> None:
    """End an upgrade's span with its HTTP status (101, or the refusal's with its reason).

    A 5xx marks the span as an error (HTTP server spans: a 4xx is the client's); None: no
    status was answered (the client left before the 101), ``reason`` says why.

    Example:
        >>> end_upgrade(None, 101)  # tracing off, or no span: nothing
    """
    if span is None:
        return
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if status != 101:
        span.set_attribute("ignitia_sync.refusal.reason", reason)
    if status is not None and status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR, reason))
    span.end()


def start_connection(upgrade: Any, route: str) -> Any:
    """Start a connection's span, a child of its upgrade's span; None when tracing is off.

    Example:
        >>> start_connection(None, "/chat") is None
        True
    """
    if upgrade is None:
        return None
    if not upgrade.is_recording() and not configured():  # a remote context, no provider: kept as is
        return upgrade
    attributes = {"http.route": route} if route else {}
    parent = trace.set_span_in_context(upgrade)
    return _tracer.start_span(CONNECTION, context=parent, kind=SpanKind.SERVER, attributes=attributes)


def current(span: Any) -> contextlib.AbstractContextManager[object]:
    """The block runs with ``span`` as the current span (the handler, inside its connection's span).

    The spans the block starts are its children. The span is not ended here.

    Example:
        >>> with current(None):  # tracing off, or no span: nothing
        ...     pass
    """
    if span is None:
        return contextlib.nullcontext()
    return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


def end_connection(span: Any, close_code: int | None, messages_in: int, messages_out: int) -> None:
    """End a connection's span: its close code (1006 when none was exchanged) and message counts.

    A 1011 (the handler raised, or the server failed) marks the span as an error.

    Example:
        >>> end_connection(None, 1000, 3, 4)
    """
    if span is None:
        return
    span.set_attribute("websocket.close.code", close_code or 1006)
    span.set_attribute("websocket.messages.received", messages_in)
    span.set_attribute("websocket.messages.sent", messages_out)
    if close_code == 1011:
        span.set_attribute("error.type", "1011")
        span.set_status(Status(StatusCode.ERROR, "internal error (1011)"))
    span.end()


def publish(room: str | None) -> str | None:
    """A publish span for a broadcast to ``room`` (None: everyone), ended at once; its ``traceparent``.

    None when tracing is off, no tracer provider is set, or the span is not recording (not
    sampled): then nothing crosses.

    Example:
        >>> publish("lobby") is None or ENABLED
        True
    """
    if not ENABLED or not configured():
        return None
    span = _tracer.start_span(PUBLISH, kind=SpanKind.PRODUCER, attributes=_destination(room))
    try:
        if not span.is_recording():
            return None
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return carrier.get("traceparent")
    finally:
        span.end()


def deliver(traceparent: str, room: str | None, delivery: Callable[[], object]) -> None:
    """Run ``delivery`` inside a deliver span *linked* to the publish span ``traceparent`` names.

    Without tracing (or with a ``traceparent`` that names no valid span) it only runs it.

    Example:
        >>> deliver("00-bad", None, lambda: None)
    """
    if not ENABLED or not configured():
        delivery()
        return
    published = trace.get_current_span(propagate.extract({"traceparent": traceparent})).get_span_context()
    links = [Link(published)] if published.is_valid else []
    span = _tracer.start_span(
        DELIVER, context=trace.set_span_in_context(trace.INVALID_SPAN), kind=SpanKind.CONSUMER,
        attributes=_destination(room), links=links,
    )
    with trace.use_span(span, end_on_exit=True):
        delivery()


def configured() -> bool:
    """True once the application has set a tracer provider (an SDK's), so that spans are kept.

    OpenTelemetry's default provider, before one is set, and its explicit no-op provider
    make spans that record nothing.

    Example:
        >>> configured() in (True, False)
        True
    """
    return ENABLED and not isinstance(trace.get_tracer_provider(), (ProxyTracerProvider, NoOpTracerProvider))


def _destination(room: str | None) -> dict[str, str]:
    """The messaging attributes of a broadcast: the room, or ``*`` for everyone.

    Example:
        >>> _destination(None)["messaging.destination.name"]
        '*'
    """
    return {"messaging.system": "redis", "messaging.destination.name": "*" if room is None else room}
