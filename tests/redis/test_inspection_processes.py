"""The cluster inspection endpoint across real processes: list everywhere, close one connection or a user anywhere.

Two ``ignitia-sync`` processes serve tests/scripts/inspect_app.py (a WebSocketMiddleware on a
real redis-server, with ``ConnectionsEndpoint.cluster``); python-websockets clients; plain
HTTP with http.client. This test process also asks through an ``Emitter`` (a process with no
WebSockets). A SIGSTOPped process is one that cannot answer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from ignitia_sync.redis import Emitter
from tests.apps import closed_with, still_open
from tests.redis_server import RedisServer
from tests.subprocess_server import free_port, host_command, running
from tests.waiting import wait_for

TOKEN = "a-token-for-tests-only"
TARGET = "tests.scripts.inspect_app:app"
TIMEOUT = 1.0  # the endpoint's wait for answers


def request(port: int, method: str, path: str, body: object = None, token: str | None = TOKEN,
            raw: bytes | None = None) -> tuple[int, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, path, data, headers)
        response = connection.getresponse()
        answer = response.read()
        return response.status, json.loads(answer) if answer else None
    finally:
        connection.close()


@pytest.fixture
def ports(redis_server: RedisServer) -> Iterator[list[int]]:
    """Two processes serving the app on one Redis."""
    env = {"REDIS_URL": redis_server.url, "INSPECT_TOKEN": TOKEN, "INSPECT_TIMEOUT": str(TIMEOUT)}
    with contextlib.ExitStack() as stack:
        ports = [free_port() for _ in range(2)]
        for port in ports:
            stack.enter_context(running(host_command("ignitia-sync", TARGET, port), port, env))
        yield ports


class Held:
    """The clients of a test: ``open(port, room, user)`` → (client, own id, pid)."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack

    def open(self, port: int, room: str, user: str = "-") -> tuple[ClientConnection, str, int]:
        client = self.stack.enter_context(connect(f"ws://127.0.0.1:{port}/rooms/{room}/{user}", open_timeout=10))
        own_id, pid = client.recv(timeout=10).split()
        return client, own_id, int(pid)


@pytest.fixture
def held() -> Iterator[Held]:
    with contextlib.ExitStack() as stack:
        yield Held(stack)


def listening(redis_server: RedisServer, count: int = 2) -> None:
    wait_for(lambda: redis_server.subscribers("ignitia:all") == count, f"{count} processes listening")


def by_pid(view: dict) -> dict[int, dict]:
    return {process["pid"]: process for process in view["processes"]}


def summary(process: dict) -> tuple[set[tuple[str, str, tuple[str, ...], str | None]], dict[str, int]]:
    return ({(c["id"], c["route"], tuple(c["rooms"]), c["user_id"]) for c in process["connections"]},
            process["rooms"])


@pytest.fixture
def two_of_each(ports, redis_server, held):
    """alice in both processes; bob in the first, carol in the second; rooms lobby and games."""
    a_alice = held.open(ports[0], "lobby", "alice")
    a_bob = held.open(ports[0], "games", "bob")
    b_alice = held.open(ports[1], "lobby", "alice")
    b_carol = held.open(ports[1], "lobby", "carol")
    listening(redis_server)
    return a_alice, a_bob, b_alice, b_carol


def test_one_get_lists_both_processes_connections_and_rooms_exactly(ports, two_of_each):
    a_alice, a_bob, b_alice, b_carol = two_of_each
    route = "/rooms/:room/:user"
    status, view = request(ports[0], "GET", "/connections")
    assert status == 200
    assert (view["answered"], view["expected"], view["partial"]) == (2, 2, False)
    processes = by_pid(view)
    assert set(processes) == {a_alice[2], b_alice[2]} and a_alice[2] != b_alice[2]
    assert summary(processes[a_alice[2]]) == (
        {(a_alice[1], route, ("lobby",), "alice"), (a_bob[1], route, ("games",), "bob")}, {"lobby": 1, "games": 1})
    assert summary(processes[b_alice[2]]) == (
        {(b_alice[1], route, ("lobby",), "alice"), (b_carol[1], route, ("lobby",), "carol")}, {"lobby": 2})
    for process in processes.values():
        assert len(process["uid"]) == 16 and process["host"] and process["truncated"] is False
        assert process["connections_total"] == 2
    status, again = request(ports[1], "GET", "/connections")  # the other process sees the same
    assert status == 200 and {p["uid"]: summary(p) for p in again["processes"]} == {
        p["uid"]: summary(p) for p in view["processes"]}


def test_an_emitter_in_a_process_without_websockets_sees_the_same(ports, redis_server, two_of_each):
    emitter = Emitter(redis_server.url)
    try:
        view = emitter.inspect(timeout=5)
    finally:
        emitter.close()
    assert (view["answered"], view["expected"], view["partial"]) == (2, 2, False)
    assert {len(process["connections"]) for process in view["processes"]} == {2}
    assert redis_server.client().keys("{ignitia}:inspect:*") == []  # the reply list is gone


def test_a_stopped_process_makes_the_answer_partial_within_the_timeout(ports, two_of_each):
    _, _, b_alice, _ = two_of_each
    os.kill(b_alice[2], signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, view = request(ports[0], "GET", "/connections")
        took = time.monotonic() - started
    finally:
        os.kill(b_alice[2], signal.SIGCONT)
    assert status == 200
    assert (view["answered"], view["expected"], view["partial"]) == (1, 2, True)
    assert [process["pid"] for process in view["processes"]] != [b_alice[2]]
    assert TIMEOUT <= took < TIMEOUT + 3
    status, view = request(ports[0], "GET", "/connections")  # awake again: whole
    assert status == 200 and (view["answered"], view["partial"]) == (2, False)


def test_closing_one_connection_of_the_other_process_closes_exactly_it(ports, two_of_each):
    a_alice, a_bob, b_alice, b_carol = two_of_each
    uid = by_pid(request(ports[0], "GET", "/connections")[1])[b_carol[2]]["uid"]
    order = {"process": uid, "id": b_carol[1], "code": 4000, "reason": "bye carol"}
    status, answer = request(ports[0], "POST", "/connections/close", order)
    assert (status, answer) == (202, {"sent": order, "heard_by": 1})
    assert closed_with(b_carol[0]) == (4000, "bye carol")
    for client, _, _ in (a_alice, a_bob, b_alice):
        still_open(client)
    status, view = request(ports[1], "GET", "/connections")
    assert sorted(c["id"] for p in view["processes"] for c in p["connections"]) == sorted(
        [a_alice[1], a_bob[1], b_alice[1]])
    # ids are per process: the first process's connections have the same ids, and stayed open
    assert {a_alice[1], a_bob[1]} == {b_alice[1], b_carol[1]}
    status, answer = request(ports[1], "POST", "/connections/close", {**order, "id": "#999"})  # nobody
    assert (status, answer["heard_by"]) == (202, 1)
    gone = {**order, "process": "0123456789abcdef"}  # no such process: nobody heard it
    assert request(ports[1], "POST", "/connections/close", gone) == (202, {"sent": gone, "heard_by": 0})
    for client, _, _ in (a_alice, a_bob, b_alice):
        still_open(client)


def test_closing_a_user_closes_its_connections_in_every_process(ports, two_of_each):
    a_alice, a_bob, b_alice, b_carol = two_of_each
    order = {"user_id": "alice", "code": 1008, "reason": "signed out"}
    status, answer = request(ports[1], "POST", "/connections/close", order)
    assert (status, answer) == (202, {"sent": order})
    assert [closed_with(client) for client, _, _ in (a_alice, b_alice)] == [(1008, "signed out")] * 2
    for client, _, _ in (a_bob, b_carol):
        still_open(client)


@pytest.mark.parametrize(("raw", "error"), [
    (b"", "a JSON body"),
    (b"x" * 5000, "a JSON body"),
    (b"not json", "not JSON"),
    (b"[1]", "JSON object"),
    (b'{"user_id": "alice", "code": 1011}', "close code 1011"),
    (b'{"user_id": "alice", "code": "1008"}', "code must be an integer"),
    (b'{"user_id": "alice", "code": true}', "code must be an integer"),
    (b'{"user_id": "alice", "reason": 5}', "reason must be a string"),
    (b'{"user_id": "alice", "reason": "' + b"x" * 124 + b'"}', "at most 123 bytes"),
    (b'{"user_id": 7}', "user_id must be a string"),
    (b'{"user_id": "#17"}', "not start with '#'"),
    (b'{"user_id": "alice", "process": "0123456789abcdef"}', "unknown field 'process'"),
    (b'{"process": "0123456789abcdef"}', "id must be"),
    (b'{"process": "nope", "id": "#1"}', "process must be"),
    (b'{"process": "0123456789abcdef", "id": "alice"}', "id must be"),
    (b'{"process": "0123456789abcdef", "id": "#1", "token": "x"}', "unknown field 'token'"),
])
def test_a_bad_order_is_400_with_one_line(ports, raw, error):
    status, answer = request(ports[0], "POST", "/connections/close", raw=raw)
    assert status == 400 and set(answer) == {"error"}
    assert error in answer["error"] and "\n" not in answer["error"]


def test_the_guards_and_methods_of_cluster_mode(ports):
    assert request(ports[0], "GET", "/connections", token=None)[0] == 401
    assert request(ports[0], "POST", "/connections/close", {"user_id": "alice"}, token="wrong-" + TOKEN)[0] == 401
    assert request(ports[0], "GET", "/connections/close")[0] == 405
    assert request(ports[0], "PUT", "/connections")[0] == 405
    assert request(ports[0], "DELETE", "/connections/close")[0] == 405
    assert request(ports[0], "GET", "/elsewhere")[0] == 404
