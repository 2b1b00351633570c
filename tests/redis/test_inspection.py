"""Inspections over a real redis-server in this process: answers, partial answers, refusals, the endpoint's guards.

Backplanes attached in this hub (``make``) or a server in a thread (``serve``) with a
backplane URL; "another process" is a plain redis-py client. The endpoint across real
processes is in test_inspection_processes.py.
"""

from __future__ import annotations

import io
import json
import threading
import time

import pytest
from websockets.sync.client import connect

from ignitia_sync import Message, Router
from ignitia_sync.hosting.host import Host, HostSettings
from ignitia_sync.hosting.inspection_endpoint import ConnectionsEndpoint
from ignitia_sync.redis import Emitter
from ignitia_sync.redis.envelope import encode_close_one, encode_inspect
from ignitia_sync.redis.inspection import _BURST
from tests.apps import closed_with, still_open
from tests.conftest import url
from tests.waiting import wait_for

OTHER = b"f" * 16
TOKEN = "a-token-for-tests-only"


def listening(redis_server, count: int) -> None:
    wait_for(lambda: redis_server.subscribers("ignitia:all") == count, f"{count} subscribers of ignitia:all")


def test_every_backplane_answers_including_the_asking_one(make, redis_server):
    first, second = make(), make()
    listening(redis_server, 2)
    view = first.inspect(timeout=5)
    assert (view["answered"], view["expected"], view["partial"]) == (2, 2, False)
    assert {process["uid"] for process in view["processes"]} == {first.uid.decode(), second.uid.decode()}
    assert all(process["connections"] == [] and process["rooms"] == {} for process in view["processes"])
    assert first.stats()["inspections_answered"] == second.stats()["inspections_answered"] == 1
    assert redis_server.client().keys("{ignitia}:inspect:*") == []


def test_a_subscriber_that_never_answers_makes_it_partial_after_the_timeout(make, redis_server):
    """An older process (it rejects the request) or any other subscriber of the channel."""
    backplane = make()
    silent = redis_server.client().pubsub()
    silent.subscribe("ignitia:all")
    try:
        listening(redis_server, 2)
        started = time.monotonic()
        view = backplane.inspect(timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 3
    finally:
        silent.close()
    assert (view["answered"], view["expected"], view["partial"]) == (1, 2, True)


def test_a_server_lists_its_connections_and_closes_one_by_its_own_id(serve, redis_server):
    def hold(ws, room):
        ws.join(room)
        ws.send_text(ws.id)
        for message in ws:
            ws.send(message)

    server = serve(Router().websocket("/rooms/:room", hold), backplane=redis_server.url)
    with connect(url(server, "/rooms/lobby"), open_timeout=10) as lobby, \
            connect(url(server, "/rooms/games"), open_timeout=10) as games:
        ids = [lobby.recv(timeout=10), games.recv(timeout=10)]
        listening(redis_server, 1)
        backplane = server.registry.backplane
        (process,) = backplane.inspect(timeout=5)["processes"]
        assert process["uid"] == backplane.uid.decode() and process["rooms"] == {"lobby": 1, "games": 1}
        assert {(c["id"], c["route"], tuple(c["rooms"])) for c in process["connections"]} == {
            (ids[0], "/rooms/:room", ("lobby",)), (ids[1], "/rooms/:room", ("games",))}
        assert backplane.close_connection(process["uid"], ids[1], 4001, "closed by ops") == 1
        assert closed_with(games) == (4001, "closed by ops")
        still_open(lobby)
        assert backplane.close_connection(process["uid"], "#999999", 4001, "") == 1  # heard; nobody has it
        wait_for(lambda: backplane.stats()["inspection_closes_missed"] == 1, "the missed close counted")
        assert backplane.stats()["inspection_closes"] == 1
        still_open(lobby)


def test_a_flood_of_inspections_is_mostly_refused_and_serving_goes_on(make, redis_server):
    delivered = []
    backplane = make()
    other = make()
    other._on_broadcast = lambda message, room: delivered.append(message)  # what "other" hears
    listening(redis_server, 2)
    client = redis_server.client()
    pipe = client.pipeline(transaction=False)
    for n in range(40):
        pipe.publish("ignitia:all", encode_inspect(OTHER, b"{ignitia}:inspect:flood%d" % n, 5000))
    pipe.execute()
    stats = backplane.stats
    wait_for(lambda: stats()["inspections_answered"] + stats()["inspections_refused"] == 40, "every request settled")
    assert stats()["inspections_answered"] <= _BURST + 1 and stats()["inspections_refused"] >= 40 - _BURST - 1
    backplane.publish(Message.text("still serving"), None)
    wait_for(lambda: delivered == [Message.text("still serving")], "a broadcast after the flood")
    wait_for(lambda: not client.keys("{ignitia}:inspect:flood*"), "the answers expired", timeout=10)


@pytest.mark.parametrize(("channel", "envelope"), [
    ("ignitia:all", encode_inspect(OTHER, b"elsewhere:key", 5000)),  # a reply key outside the prefix
    ("ignitia:room:lobby", encode_inspect(OTHER, b"{ignitia}:inspect:x", 5000)),  # not on all
    ("ignitia:all", encode_close_one(OTHER, "#1", 4000, "")),  # a close on all: never on another's channel
    ("ignitia:all", b"Iq" + OTHER + b"\x00"),  # malformed
])
def test_an_order_that_is_not_one_is_rejected_and_counted(make, redis_server, channel, envelope):
    backplane = make()
    backplane.joined("lobby")
    wait_for(lambda: redis_server.subscribers("ignitia:room:lobby") == 1, "listening to lobby")
    redis_server.client().publish(channel, envelope)
    wait_for(lambda: backplane.stats()["rejected"] == 1, "the order rejected")
    assert backplane.stats()["inspections_answered"] == 0
    assert redis_server.client().keys("*inspect*") == [] and redis_server.client().keys("elsewhere*") == []


def call(endpoint, method: str, path: str, peer: str = "127.0.0.1", body: bytes = b"") -> tuple[str, object]:
    statuses = []
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "REMOTE_ADDR": peer,
               "HTTP_AUTHORIZATION": f"Bearer {TOKEN}", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    answer = b"".join(endpoint(environ, lambda status, headers: statuses.append(status)))
    return statuses[0], json.loads(answer)


@pytest.mark.parametrize("peer", ["203.0.113.7", "10.1.2.3", "2001:db8::1", ""])
def test_a_foreign_address_gets_403_in_cluster_mode_too(redis_server, peer):
    emitter = Emitter(redis_server.url)
    endpoint = ConnectionsEndpoint.cluster(emitter, TOKEN)
    body = b'{"user_id": "alice"}'
    assert call(endpoint, "GET", "/connections", peer)[0] == "403 Forbidden"
    assert call(endpoint, "POST", "/connections/close", peer, body)[0] == "403 Forbidden"
    assert call(endpoint, "GET", "/connections") == ("200 OK", {"processes": [], "answered": 0, "expected": 0,
                                                                 "partial": False})
    assert call(endpoint, "POST", "/connections/close", body=body) == (
        "202 Accepted", {"sent": {"user_id": "alice", "code": 1008, "reason": ""}})
    emitter.close()


def test_redis_down_is_503_with_one_line(redis_server):
    emitter = Emitter(redis_server.url, socket_connect_timeout=1)
    endpoint = ConnectionsEndpoint.cluster(emitter, TOKEN)
    redis_server.kill()
    assert call(endpoint, "GET", "/connections") == ("503 Service Unavailable", {"error": "the backplane did not answer"})
    status, _ = call(endpoint, "POST", "/connections/close", body=b'{"user_id": "alice"}')
    assert status == "503 Service Unavailable"


def test_cluster_mode_needs_something_that_reaches_other_processes():
    with pytest.raises(TypeError, match="Redis backplane"):
        ConnectionsEndpoint.cluster(Host(HostSettings()), TOKEN)
    with pytest.raises(TypeError):
        ConnectionsEndpoint.cluster(object(), TOKEN)
    with pytest.raises(ValueError):
        ConnectionsEndpoint.cluster(Host(HostSettings(backplane="redis://127.0.0.1:1/0")), TOKEN, timeout=0)
    ConnectionsEndpoint.cluster(Host(HostSettings(backplane="redis://127.0.0.1:1/0")), TOKEN)


class Listed:
    """An inspectable of its own (a host answers with its ConnectionInfo records)."""

    def __init__(self, *ids: str) -> None:
        self.ids = ids

    def inspect_connections(self):
        return [Record(id) for id in self.ids]

    def close_connection(self, id, code, reason):
        return False


class Record:
    def __init__(self, id: str) -> None:
        self.id = id

    def as_json(self):
        return {"id": self.id, "rooms": ["shared"]}


def test_hosts_sharing_one_backplane_are_one_answer(make, redis_server):
    backplane = make()
    first, second = Listed("#1", "#2"), Listed("#3")
    backplane.add_inspectable(first)
    backplane.add_inspectable(second)
    listening(redis_server, 1)
    (process,) = backplane.inspect(timeout=5)["processes"]
    assert sorted(c["id"] for c in process["connections"]) == ["#1", "#2", "#3"]
    assert process["rooms"] == {"shared": 3}
    del second  # held weakly: a host that is gone is left out
    (process,) = backplane.inspect(timeout=5)["processes"]
    assert sorted(c["id"] for c in process["connections"]) == ["#1", "#2"]


def test_a_host_registers_itself_with_its_redis_backplane(redis_server):
    host = Host(HostSettings(backplane=redis_server.url))
    assert list(host.registry.backplane._answerer._inspected) == [host]


def test_a_thread_without_a_hub_asks_with_plain_redis_py(make, redis_server):
    backplane = make()
    listening(redis_server, 1)
    answers = []
    thread = threading.Thread(target=lambda: answers.append(backplane.inspect(timeout=5)))
    thread.start()
    wait_for(lambda: answers, "the thread's answer")  # this hub answers meanwhile
    thread.join()
    assert (answers[0]["answered"], answers[0]["expected"]) == (1, 1)
