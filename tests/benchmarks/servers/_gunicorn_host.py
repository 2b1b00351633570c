"""What the gunicorn servers share: one Flask echo app, and gunicorn run in-process with one worker.

The process that does the work is gunicorn's worker, not the arbiter that run.py starts:
the worker prints the ``ws://`` line with its own pid, and run.py measures that pid (CPU
time and RSS). The app is built in the worker (``load``), after the gevent worker has
monkey-patched it, as ``gunicorn -k ... module:app`` does. These servers have /echo only,
so run.py gives them the echo scenarios only (E1-E3).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication


def flask_echo_app(sock_class: type) -> Any:
    """The Flask app both servers run, with ``sock_class`` (flask-sock's ``Sock`` or ours)."""
    from flask import Flask

    app = Flask(__name__)
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": None}  # no limit: 16 KiB messages (E3) pass
    sock = sock_class(app)

    @sock.route("/echo")
    def echo(ws: Any) -> None:  # flask-sock's documented echo loop; ours takes it unchanged
        while True:
            ws.send(ws.receive())

    return app


class _OneWorker(BaseApplication):
    def __init__(self, load: Callable[[], Any], options: dict[str, Any]) -> None:
        self._load = load
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:  # control_socket_disable is gunicorn 25.1+
                self.cfg.set(key, value)

    def load(self) -> Any:
        return self._load()


def serve(load: Callable[[], Any], worker_class: str) -> None:
    """``gunicorn -k worker_class -w 1 --bind 127.0.0.1:PORT`` for the app ``load()`` returns."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port

    def post_worker_init(worker: Any) -> None:
        print(f"listening on ws://127.0.0.1:{port} (gunicorn worker pid {os.getpid()})", flush=True)

    _OneWorker(
        load,
        {
            "bind": f"127.0.0.1:{port}",
            "workers": 1,
            "worker_class": worker_class,
            "graceful_timeout": 5,
            "loglevel": "warning",
            "post_worker_init": post_worker_init,
            "control_socket_disable": True,  # no ~/.gunicorn/gunicorn.ctl shared with other gunicorns
        },
    ).run()
