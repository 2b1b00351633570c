"""A Flask app whose import holds a gunicorn worker in its boot until the test lets it go.

    IGNITIA_TEST_BOOT_GATE=/tmp/gate gunicorn -k ignitia_sync.gunicorn.Worker -w 2 tests.scripts.boot_gate_app:app

Imported (the worker's ``load_wsgi``, after its signal handlers are in place) with
``IGNITIA_TEST_HOLD_AT=import``, the module writes ``importing.<pid>`` in the gate directory,
then waits until ``open`` appears there. ``tests/scripts/boot_gate_conf.py`` holds a worker
earlier, between the fork and its own signal handlers.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask

from ignitia_sync.flask import Sock

GATE = os.environ["IGNITIA_TEST_BOOT_GATE"]


def held(stage: str) -> None:
    """Say that this process has reached ``stage``, then wait until the test opens the gate."""
    with open(os.path.join(GATE, f"{stage}.{os.getpid()}"), "w"):
        pass
    while not os.path.exists(os.path.join(GATE, "open")):
        time.sleep(0.01)  # a polled file: the test's go-ahead, not a guessed time


if os.environ.get("IGNITIA_TEST_HOLD_AT") == "import":
    held("importing")

app = Flask(__name__)
sock = Sock(app)


@app.route("/pid")
def pid() -> str:
    return str(os.getpid())


@sock.route("/ws/echo")
def echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)
