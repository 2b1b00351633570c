"""The cluster inspection endpoint under gunicorn -w 2 -k ignitia_sync.gunicorn.Worker: one GET lists both workers.

tests/scripts/inspect_app.py on a real redis-server; connections are opened until each worker
holds some (the route says its process id); whichever worker answers the GET lists both. With
``--preload`` the app (its host and backplane) is made in the master, before the fork.
"""

from __future__ import annotations

import contextlib

import pytest
from websockets.sync.client import connect

from tests.apps import closed_with, still_open
from tests.redis.test_inspection_processes import TOKEN, by_pid, request, summary
from tests.subprocess_server import free_port, host_command, running
from tests.waiting import wait_for


@pytest.mark.parametrize("preload", [False, True])
def test_one_get_through_either_worker_lists_both_and_closes_in_either(redis_server, preload):
    port = free_port()
    command = host_command("gunicorn", "tests.scripts.inspect_app:app", port, workers=2)
    if preload:
        command.insert(-1, "--preload")
    env = {"REDIS_URL": redis_server.url, "INSPECT_TOKEN": TOKEN}
    with running(command, port, env), contextlib.ExitStack() as stack:
        held: dict[int, list[tuple[object, str]]] = {}

        def one_more() -> bool:
            client = stack.enter_context(connect(f"ws://127.0.0.1:{port}/rooms/lobby/-", open_timeout=10))
            own_id, pid = client.recv(timeout=10).split()
            held.setdefault(int(pid), []).append((client, own_id))
            return len(held) == 2

        wait_for(one_more, "a connection in each of the two workers", timeout=30)
        wait_for(lambda: redis_server.subscribers("ignitia:all") == 2, "both workers listening")
        for _ in range(4):  # whichever worker serves the GET
            status, view = request(port, "GET", "/connections")
            assert status == 200 and (view["answered"], view["expected"], view["partial"]) == (2, 2, False)
            processes = by_pid(view)
            assert set(processes) == set(held)
            for pid, clients in held.items():
                assert summary(processes[pid]) == (
                    {(own_id, "/rooms/:room/:user", ("lobby",), None) for _, own_id in clients},
                    {"lobby": len(clients)})
        pid, clients = next(iter(held.items()))
        target, own_id = clients[-1]
        order = {"process": processes[pid]["uid"], "id": own_id, "code": 4000, "reason": "bye"}
        assert request(port, "POST", "/connections/close", order) == (202, {"sent": order, "heard_by": 1})
        assert closed_with(target) == (4000, "bye")
        for others in held.values():
            for client, _ in others:
                if client is not target:
                    still_open(client)
