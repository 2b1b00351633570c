"""A gunicorn config file (``-c``) whose ``post_fork`` holds each worker until the test lets it go.

    IGNITIA_TEST_BOOT_GATE=/tmp/gate gunicorn -c tests/scripts/boot_gate_conf.py -k ... tests.scripts.boot_gate_app:app

``post_fork`` runs in the child before the worker's ``init_process``: a signal arriving
while it waits reaches the handler the child inherited from the arbiter, which only puts it
on the child's copy of the arbiter's queue. The hook writes ``forked.<pid>`` in the gate
directory, then waits until such a signal has come (or ``open`` appears there).
"""

from __future__ import annotations

import os
import time
from typing import Any


def post_fork(server: Any, worker: Any) -> None:
    """In the worker's process, before its own signal handlers: wait until a signal reaches the inherited one."""
    gate = os.environ["IGNITIA_TEST_BOOT_GATE"]
    with open(os.path.join(gate, f"forked.{os.getpid()}"), "w"):
        pass
    queued = server.SIG_QUEUE  # this process's copy: a SimpleQueue (gunicorn 24+) or a list
    while not os.path.exists(os.path.join(gate, "open")) and (
        queued.empty() if hasattr(queued, "empty") else not queued
    ):
        time.sleep(0.01)  # polled: the arbiter's signal or the test's go-ahead, not a guessed time
