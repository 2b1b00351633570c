"""The Redis backplane's figures in /metrics, scraped over HTTP from a real server on a real
redis-server: published, received, rejected, dropped while Redis is down, the link gauge, reconnects."""

from __future__ import annotations

from websockets.sync.client import connect

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.redis import Emitter
from tests.conftest import url
from tests.metrics_scrape import scraped
from tests.waiting import wait_for


def room(ws: WebSocketConnection) -> None:
    for message in ws:
        if isinstance(message, Message.Text):
            ws.registry.broadcast(message)


def test_backplane_figures_through_an_outage(serve, redis_server):
    server = serve(Router().websocket("/room", room), backplane=redis_server.url, metrics=True)
    # kind="redis": without a Redis backplane these families have no sample (no false "down")
    wait_for(lambda: scraped(server.address).get("ignitia_sync_backplane_up", kind="redis") == 1, "the link up")
    before = scraped(server.address)

    def change(name: str, **labels: str) -> float:
        return (scraped(server.address) - before).get(name, **labels)

    with connect(url(server, "/room")) as first, connect(url(server, "/room")) as second:
        wait_for(lambda: len(server.registry) == 2, "both connections registered")
        first.send("local")  # delivered here, published once
        assert first.recv(timeout=5) == second.recv(timeout=5) == "local"
        wait_for(lambda: change("ignitia_sync_backplane_published_total", kind="redis") == 1, "the broadcast published")

        Emitter(redis_server.url).broadcast(Message.text("from a worker"))  # received once, delivered to both
        assert first.recv(timeout=5) == second.recv(timeout=5) == "from a worker"
        assert change("ignitia_sync_backplane_received_total", kind="redis") == 1

        redis_server.client().publish("ignitia:all", b"not an envelope")
        wait_for(lambda: change("ignitia_sync_backplane_rejected_total", kind="redis") == 1, "the malformed message rejected")

        redis_server.kill()
        wait_for(lambda: scraped(server.address).get("ignitia_sync_backplane_up", kind="redis") == 0, "the link down")
        first.send("while down")  # delivered here; dropped for the other processes
        assert first.recv(timeout=5) == second.recv(timeout=5) == "while down"
        wait_for(lambda: change("ignitia_sync_backplane_dropped_total", kind="redis") == 1, "the broadcast dropped")

        redis_server.start()
        wait_for(lambda: scraped(server.address).get("ignitia_sync_backplane_up", kind="redis") == 1, "the link up again",
                 timeout=30)
        after = scraped(server.address) - before
    assert after.get("ignitia_sync_backplane_published_total", kind="redis") == 1
    assert after.get("ignitia_sync_backplane_received_total", kind="redis") == 1
    assert after.get("ignitia_sync_backplane_dropped_total", kind="redis") == 1
    assert after.get("ignitia_sync_backplane_rejected_total", kind="redis") == 1
    assert after.get("ignitia_sync_backplane_reconnects_total", kind="redis") >= 1
    assert after.get("ignitia_sync_broadcasts_total") == 3  # "local", the emitter's, "while down"
    assert after.get("ignitia_sync_broadcast_deliveries_total") == 6


def test_publish_to_deliver_latency_of_stamped_messages(serve, redis_server):
    from ignitia_sync.redis import RedisBackplane

    # two hosts, each with its own backplane (its own process id on Redis): one publishes, the other receives
    sender = serve(Router().websocket("/room", room), metrics=True,
                   backplane=RedisBackplane(redis_server.url, publish_times=True))
    receiver = serve(Router().websocket("/room", room), metrics=True, backplane=RedisBackplane(redis_server.url))
    before = scraped(receiver.address)
    with connect(url(sender, "/room")) as speaker, connect(url(receiver, "/room")) as listener:
        wait_for(lambda: len(sender.registry) == 1 and len(receiver.registry) == 1, "one connection on each")
        wait_for(lambda: redis_server.subscribers("ignitia:all") == 2, "both backplanes subscribed")
        speaker.send("stamped")
        assert speaker.recv(timeout=5) == "stamped"
        assert listener.recv(timeout=5) == "stamped"  # through Redis
        listener.send("not stamped")  # the receiver's backplane publishes without a time
        assert speaker.recv(timeout=5) == "not stamped"
    change = scraped(receiver.address) - before
    assert change.get("ignitia_sync_backplane_latency_seconds_count", kind="redis") == 1  # the stamped one only
    assert 0 <= change.get("ignitia_sync_backplane_latency_seconds_sum", kind="redis") < 5
    assert change.get("ignitia_sync_backplane_received_total", kind="redis") == 2  # one each way
