"""examples/rooms_consumer.py, run as its readers run it: it resumes its room after its own
restart (from the positions file) and is told when a restarted server cannot replay."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

from ignitia_sync import Message
from ignitia_sync.client import connect_rooms
from tests.subprocess_server import ROOT, free_port, running

SERVER = "tests.client_rooms_server:router"


def say(port: int, *texts: str) -> None:
    """Send each text from a client of our own; the server broadcasts it to "lobby", then answers us."""
    with connect_rooms(f"ws://127.0.0.1:{port}/rooms") as ws:
        for text in texts:
            ws.send_text(text)
            while ws.recv(timeout=10) != Message.text(f"you said {text}"):
                pass  # joined, the room's messages


def start_consumer(port: int, path: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "examples/rooms_consumer.py", f"ws://127.0.0.1:{port}/rooms", path],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT})


def lines(consumer: subprocess.Popen[str], count: int) -> list[str]:
    assert consumer.stdout is not None
    return [consumer.stdout.readline().strip() for _ in range(count)]


def stop(consumer: subprocess.Popen[str]) -> None:
    consumer.send_signal(signal.SIGTERM)
    rest, errors = consumer.communicate(timeout=20)
    assert consumer.returncode == 0 and rest.splitlines()[-1:] == ["stopped"], errors
    assert "Traceback" not in errors, errors


def test_the_rooms_consumer_resumes_after_its_own_restart_and_hears_of_a_server_restart(tmp_path):
    port, path = free_port(), str(tmp_path / "positions.json")
    command = [sys.executable, "-m", "ignitia_sync", SERVER, "--port", str(port)]
    consumer = None
    with contextlib.ExitStack() as servers:
        server = servers.enter_context(running(command, port))
        try:
            consumer = start_consumer(port, path)
            assert lines(consumer, 1) == ["joined lobby: 0 missed message(s) follow"]
            say(port, "one")
            assert lines(consumer, 1) == ["lobby #1: 'one'"]
            stop(consumer)
            with open(path) as file:
                assert [position["offset"] for position in json.load(file).values()] == [1]

            say(port, "two", "three")  # while the consumer is not running
            consumer = start_consumer(port, path)
            assert lines(consumer, 3) == [
                "joined lobby: 2 missed message(s) follow", "lobby #2: 'two'", "lobby #3: 'three'"]

            server.terminate()  # a new server process: a new epoch, nothing to replay from
            servers.close()
            servers.enter_context(running(command, port))
            assert lines(consumer, 1) == ["reload lobby (epoch changed)"]
            say(port, "four")
            assert lines(consumer, 1) == ["lobby #1: 'four'"]
            stop(consumer)
        finally:
            if consumer is not None:
                consumer.kill()
