"""docs/monitoring.md's programs (docs/examples/monitoring/), run as the page says: the standalone
server with metrics=True, and the Flask app under gunicorn -c gunicorn.conf.py with two workers."""

from __future__ import annotations

import os
import pathlib
import sys

from ignitia_sync import Message
from ignitia_sync.client import connect
from tests.metrics_scrape import scrape, scraped
from tests.subprocess_server import free_port, host_command, running
from tests.waiting import wait_for

FOLDER = pathlib.Path(__file__).resolve().parents[2] / "docs" / "examples" / "monitoring"
ROOT = FOLDER.parents[2]


def _env(**extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(FOLDER), str(ROOT)]), **extra}


def _echo(port: int, path: str = "/echo") -> None:
    with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10) as ws:
        ws.send_text("hi")
        assert ws.recv(timeout=10) == Message.text("hi")


def test_the_standalone_server_serves_its_metrics():
    port = free_port()
    with running([sys.executable, str(FOLDER / "server.py"), "--port", str(port)], port, _env()):
        _echo(port)
        wait_for(lambda: scraped(("127.0.0.1", port)).get("ignitia_sync_connections_closed_total",
                                                          route="/echo", code="1000") == 1, "the echo counted")
        figures = scraped(("127.0.0.1", port))
        assert figures.get("ignitia_sync_connections_opened_total", route="/echo") == 1
        assert figures.get("ignitia_sync_messages_received_total") == 2  # "hi" and the Close


def test_the_flask_app_under_gunicorn_with_two_workers(tmp_path):
    port = free_port()
    command = host_command("gunicorn", "flask_app:app", port, workers=2)
    command[1:1] = ["-c", str(FOLDER / "gunicorn.conf.py")]
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"")  # a last run's leftover (unreadable): on_starting empties the folder
    with running(command, port, _env(PROMETHEUS_MULTIPROC_DIR=str(folder))):
        # both workers booted (each writes its live gauges once its hub runs): a worker stopped
        # while it boots waits out --graceful-timeout, which would slow this test down
        wait_for(lambda: len(list(folder.glob("gauge_livesum_*.db"))) == 2, "both workers' live gauges")
        for _ in range(4):
            _echo(port)
        wait_for(lambda: scraped(("127.0.0.1", port)).get("ignitia_sync_connections_closed_total",
                                                          route="/echo", code="1000") == 4, "four echoes counted")
        assert scrape(("127.0.0.1", port), source="127.0.0.2")[0] == 200  # loopback: 127.0.0.0/8
        assert scrape(("127.0.0.1", port), "/")[0] == 404  # Flask's, as before
