"""Trace context across the Redis backplane: two hosts on a real redis-server, each with its own
``RedisBackplane(trace_context=True)``; the receiver's deliver span links to the sender's publish
span (a link, not a parent). Without the option nothing crosses; the wire format of ``T``."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind
from websockets.sync.client import connect

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.redis import RedisBackplane, decode, encode
from ignitia_sync.redis.envelope import _BROADCAST, _TRACED, published_at, traceparent, with_trace
from tests.conftest import url
from tests.otel_spans import named, spans
from tests.waiting import wait_for

PUBLISH, DELIVER = "WebSocket broadcast publish", "WebSocket broadcast deliver"
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def room(ws: WebSocketConnection) -> None:
    for message in ws:
        if isinstance(message, Message.Text):
            ws.registry.broadcast(message)


@pytest.fixture
def exporter():
    exporter = spans()
    yield exporter
    exporter.clear()  # the provider stays (set once per process): later tests' spans pile up less


def test_the_deliver_span_links_to_the_publish_span_of_the_other_host(serve, redis_server, exporter):
    # two hosts, each with its own backplane (its own process id on Redis): one publishes, the other receives
    sender = serve(Router().websocket("/room", room), backplane=RedisBackplane(redis_server.url, trace_context=True))
    receiver = serve(Router().websocket("/room", room), backplane=RedisBackplane(redis_server.url, trace_context=True))
    with connect(url(sender, "/room")) as speaker, connect(url(receiver, "/room")) as listener:
        wait_for(lambda: len(sender.registry) == 1 and len(receiver.registry) == 1, "one connection on each")
        wait_for(lambda: redis_server.subscribers("ignitia:all") == 2, "both backplanes subscribed")
        speaker.send("traced")
        assert speaker.recv(timeout=5) == "traced"
        assert listener.recv(timeout=5) == "traced"  # through Redis
        wait_for(lambda: named(exporter, DELIVER), "the deliver span")
    [publish] = named(exporter, PUBLISH)
    [deliver] = named(exporter, DELIVER)  # the sender skips its own broadcast: one deliver span
    assert publish.kind == SpanKind.PRODUCER and deliver.kind == SpanKind.CONSUMER
    assert publish.attributes["messaging.destination.name"] == "*"  # to everyone
    assert deliver.attributes["messaging.destination.name"] == "*"
    [link] = deliver.links
    assert link.context.trace_id == publish.context.trace_id
    assert link.context.span_id == publish.context.span_id
    assert deliver.parent is None  # linked, not a child: a trace of its own
    assert deliver.context.trace_id != publish.context.trace_id
    # the publish happened inside the sender's handler, under no span of ours: a trace of its own too
    assert receiver.registry.backplane.stats()["rejected"] == 0


def test_without_trace_context_nothing_crosses(serve, redis_server, exporter):
    sender = serve(Router().websocket("/room", room), backplane=RedisBackplane(redis_server.url))
    receiver = serve(Router().websocket("/room", room), backplane=RedisBackplane(redis_server.url))
    with connect(url(sender, "/room")) as speaker, connect(url(receiver, "/room")) as listener:
        wait_for(lambda: len(sender.registry) == 1 and len(receiver.registry) == 1, "one connection on each")
        wait_for(lambda: redis_server.subscribers("ignitia:all") == 2, "both backplanes subscribed")
        speaker.send("plain")
        assert listener.recv(timeout=5) == "plain"
    assert not named(exporter, PUBLISH) and not named(exporter, DELIVER)


def test_a_traced_envelope_wraps_any_other_and_decodes_as_it():
    plain = encode(_BROADCAST, Message.text("hi"), b"0" * 16, published=12.5)
    traced = with_trace(plain, PARENT)
    assert traced == _TRACED + bytes((len(PARENT),)) + PARENT.encode() + plain
    assert decode(traced) == decode(plain)
    assert published_at(traced) == 12.5
    assert traceparent(traced) == PARENT
    assert traceparent(plain) is None


def test_older_processes_reject_the_traced_kind_and_malformed_ones_are_rejected():
    # the kinds every earlier version reads: T is none of them, so an older process counts it rejected
    assert _TRACED not in (b"B", b"D", b"X", b"b", b"d", b"W")
    for bad in (b"T", b"T\x40short", with_trace(with_trace(b"Bt0000000000000000hi", PARENT), PARENT)):
        with pytest.raises(ValueError):
            decode(bad)


def test_a_malformed_traced_envelope_is_counted_as_rejected(serve, redis_server):
    receiver = serve(Router().websocket("/room", room), backplane=RedisBackplane(redis_server.url))
    with connect(url(receiver, "/room")):
        wait_for(lambda: redis_server.subscribers("ignitia:all") == 1, "the backplane subscribed")
        redis_server.client().publish("ignitia:all", b"T\x40short")
        wait_for(lambda: receiver.registry.backplane.stats()["rejected"] == 1, "the envelope rejected")
