"""The ``ignitia-sync`` command: a mistake is one line and exit status 2; start-up lists the routes."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from ignitia_sync.client import connect
from tests.subprocess_server import ROOT, free_port, running


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ignitia_sync", *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nowhere.at_all:app"], "no module named 'nowhere.at_all' (run from the folder that holds it"),
        (["tests.scripts.cli_targets:nothing"], "has no attribute 'nothing'; it has app"),
        (["tests.scripts.cli_targets:room"], "is a function that does not take (environ, start_response)"),
        (["tests.scripts.cli_targets:number"], "is a int, not a Router or a WSGI application"),
        (["tests.scripts.cli_broken_import:app"], "raised RuntimeError: the database URL is not set"),
        (["tests.scripts.cli_targets"], "target must look like MODULE:ATTR"),
        (["tests.scripts.cli_targets:app", "--port", "eighty"], "invalid int value: 'eighty'"),
        (["tests.scripts.cli_targets:app", "--log-level", "LOUD"], "invalid choice: 'LOUD'"),
    ],
)
def test_a_mistake_is_one_line_and_status_2(args, says):
    result = cli(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("ignitia-sync: ") and says in lines[0], lines[0]


def test_debug_shows_the_traceback_too():
    result = cli("tests.scripts.cli_broken_import:app", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "the database URL is not set" in result.stderr


def test_a_port_in_use_is_one_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = cli("tests.scripts.cli_targets:app", "--port", str(port))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"ignitia-sync: port {port} on 127.0.0.1 is in use: stop what holds it, or pick --port"


def test_help_shows_every_default():
    result = cli("--help")
    assert result.returncode == 0
    for default in ("(default: 127.0.0.1)", "(default: 3000)", "(default: INFO)"):
        assert default in result.stdout


def test_start_up_lists_the_routes_and_serves_them():
    port = free_port()
    output: list[str] = []
    command = [sys.executable, "-m", "ignitia_sync", "tests.scripts.cli_targets:app", "--port", str(port)]
    with running(command, port, output=output):
        with connect(f"ws://127.0.0.1:{port}/room/lobby") as ws:
            assert ws.recv(timeout=10).data == "lobby"
    assert f"WebSocket server running on ws://127.0.0.1:{port}" in output[0]
    assert "WebSocket routes: /room/:name" in "".join(output)
