"""Several gunicorn workers and no backplane: one warning at start says rooms stop at the worker."""

from __future__ import annotations

import time

from ignitia_sync.client import connect
from tests.subprocess_server import free_port, host_command, running


def booted_workers(port: int, workers: int) -> set[str]:
    """Connect until every worker has answered (each says its pid), so all have loaded the app."""
    pids: set[str] = set()
    deadline = time.monotonic() + 60
    while len(pids) < workers and time.monotonic() < deadline:
        with connect(f"ws://127.0.0.1:{port}/ws/worker/hall", open_timeout=10) as ws:
            pids.add(ws.recv(timeout=10).data)
    return pids


def test_two_workers_without_a_backplane_warn_once_and_one_worker_does_not():
    for workers, expected in ((2, 1), (1, 0)):
        port = free_port()
        output: list[str] = []
        with running(host_command("gunicorn", "tests.scripts.flask_app:app", port, workers=workers), port,
                     output=output):
            assert len(booted_workers(port, workers)) == workers
        warnings = [line for line in output[0].splitlines() if "workers and no backplane" in line]
        assert len(warnings) == expected, output[0]
        if expected:
            assert "set IGNITIA_SYNC_BACKPLANE (or backplane=) to a Redis URL, or run -w 1" in warnings[0]
