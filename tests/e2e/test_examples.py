"""Every example, started as a user would (its own process, monkey-patched), then spoken to."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
import websocket  # websocket-client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.subprocess_server import free_port, host_command, running

ROOT = pathlib.Path(__file__).parent.parent.parent


def _start(command: list[str], env: dict[str, str] | None) -> tuple[subprocess.Popen[str], str, Callable[[], str]]:
    """The example's process, its ws:// base, and ``output()``: all it printed (call it once it has exited)."""
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"ws://([\d.]+):(\d+)", line)
        if found:
            # The rest is read as it comes (a full pipe would stall the example), checked at the end.
            reader = threading.Thread(target=lines.extend, args=(process.stdout,), daemon=True)
            reader.start()

            def output(reader: threading.Thread = reader) -> str:
                reader.join(20)
                return "".join(lines)

            return process, f"ws://{found.group(1)}:{found.group(2)}", output
    process.kill()
    raise AssertionError("example did not start:\n" + "".join(lines))


@pytest.fixture
def example() -> Iterator[Callable[..., str]]:
    """``base = example("echo")`` runs examples/echo.py --port 0; ``cli=True`` uses ignitia-sync.

    After the test each is stopped (SIGTERM), must exit with 0 and must have printed no traceback.
    """
    processes: list[tuple[subprocess.Popen[str], Callable[[], str]]] = []

    def start(name: str, env: dict[str, str] | None = None, cli: bool = False) -> str:
        if cli:
            command = [sys.executable, "-m", "ignitia_sync", f"examples.{name}:app", "--port", "0"]
        else:
            command = [sys.executable, f"examples/{name}.py", "--port", "0"]
        process, base, output = _start(command, env)
        processes.append((process, output))
        return base

    yield start
    for process, output in processes:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(15) == 0, output()
        finally:
            process.kill()
        assert "Traceback" not in output(), output()


@pytest.fixture
def example_process() -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    """Like ``example``, but hands over the process (the test signals it itself); no traceback either."""
    processes: list[tuple[subprocess.Popen[str], Callable[[], str]]] = []

    def start(name: str) -> tuple[subprocess.Popen[str], str]:
        process, base, output = _start([sys.executable, f"examples/{name}.py", "--port", "0"], None)
        processes.append((process, output))
        return process, base

    yield start
    for process, output in processes:
        process.kill()
        process.wait(15)
        assert "Traceback" not in output(), output()


def test_echo(example):
    base = example("echo")
    with connect(f"{base}/echo") as ws:
        ws.send("hi")
        assert ws.recv() == "Echo: hi"
        ws.send(b"\x01\x02")
        assert ws.recv() == b"\x01\x02"


def test_echo_through_the_command(example):
    base = example("echo", cli=True)
    client = websocket.create_connection(f"{base}/echo", timeout=10)
    client.send("cli")
    assert client.recv() == "Echo: cli"
    client.close()


def test_chat_websocket_fn(example):
    base = example("chat")
    with connect(f"{base}/chat") as ws:
        assert ws.recv() == "Welcome to the chat!"
        ws.send("hey")
        assert ws.recv() == "You said: hey"


def test_three_handler_kinds(example):
    base = example("handler_kinds")
    with connect(f"{base}/simple") as ws:
        ws.send("x")
        assert ws.recv() == "Acknowledged"
    with connect(f"{base}/messages") as ws:
        ws.send("shout")
        assert ws.recv() == "SHOUT"
        ws.send(b"\x01\x02")
        assert ws.recv() == b"\x02\x01"
    with connect(f"{base}/batch") as ws:
        for i in range(3):
            ws.send(f"m{i}")
        assert ws.recv() == "batch of 3"
        assert [ws.recv() for _ in range(3)] == ["M0", "M1", "M2"]


def test_json_messages(example):
    base = example("json_messages")
    with connect(f"{base}/game") as ws:
        ws.send(json.dumps({"player_id": 7, "x": 1, "y": 2, "piece": "rook"}))
        assert json.loads(ws.recv()) == {"accepted": True, "player_id": 7, "position": [1, 2], "piece": "rook"}
        ws.send("{broken")
        assert ws.recv().startswith("Invalid JSON: invalid JSON")
        ws.send(json.dumps({"player_id": 7}))
        assert ws.recv().startswith("Invalid JSON: not a GameMove")


def test_game_server(example):
    base = example("game")
    with connect(f"{base}/game") as ws:
        ws.send(json.dumps({"type": "Move", "x": 1, "y": 1}))
        assert json.loads(ws.recv()) == {"type": "Error", "message": "Join first"}
        ws.send(json.dumps({"type": "Join", "player_name": "ana"}))
        joined = json.loads(ws.recv())
        assert joined["type"] == "Joined" and joined["game_state"] == "1 player(s)"
        ws.send(json.dumps({"type": "Move", "x": 3, "y": 4}))
        assert json.loads(ws.recv()) == {"type": "MoveResult", "success": True, "new_state": "1 player(s)"}
        ws.send(json.dumps({"type": "Dance"}))
        assert json.loads(ws.recv())["type"] == "Error"
        ws.send(json.dumps({"type": "Leave"}))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.protocol.close_rcvd.code == 1000


def test_heartbeat_pings_while_receiving(example):
    base = example("heartbeat", env={"HEARTBEAT_SECONDS": "0.2"})
    pings: list[bytes] = []
    client = websocket.WebSocket()
    client.connect(f"{base}/heartbeat", timeout=10)
    client.send("one")
    seen_text = []
    while len(pings) < 2 or not seen_text:
        opcode, data = client.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_PING:
            pings.append(data)
            client.pong(data)
        elif opcode == websocket.ABNF.OPCODE_TEXT:
            seen_text.append(data)
    assert pings[:2] == [b"heartbeat", b"heartbeat"] and seen_text == [b"Got: one"]
    client.close()


def test_keepalive_pings_when_idle_and_answers_errors(example):
    base = example("keepalive", env={"IDLE_SECONDS": "0.2"})
    client = websocket.WebSocket()
    client.connect(f"{base}/robust", timeout=10)
    client.send(" ")
    assert client.recv() == "Error processing your message"
    client.send("fine")
    assert client.recv() == "ok: fine"
    opcode, data = client.recv_data(control_frame=True)
    assert (opcode, data) == (websocket.ABNF.OPCODE_PING, b"keepalive")
    client.close()


def test_error_recovery_closes_after_max_errors(example):
    base = example("error_recovery")
    with connect(f"{base}/resilient") as ws:
        ws.send("4")
        assert ws.recv() == "16"
        for _ in range(4):
            ws.send("not a number")
            assert ws.recv().startswith("Error: invalid literal")
        ws.send("3")  # success resets the count
        assert ws.recv() == "9"
        for _ in range(4):
            ws.send(b"")
            assert ws.recv() == "Error: empty binary message"
        ws.send(b"")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (1011, "Too many errors")


def test_high_throughput_batching(example):
    base = example("batching")
    with connect(f"{base}/batch", compression=None) as ws:
        for i in range(250):
            ws.send(f"msg{i}")
        assert [ws.recv(timeout=10) for _ in range(250)] == [f"MSG{i}" for i in range(250)]


def test_ping_pong_reach_the_handler(example):
    base = example("ping_pong")
    client = websocket.WebSocket()
    client.connect(f"{base}/ws", timeout=10)
    assert client.recv() == "Connected successfully!"
    client.ping(b"1234")
    opcode, data = client.recv_data(control_frame=True)
    assert (opcode, data) == (websocket.ABNF.OPCODE_PONG, b"1234")  # automatic
    assert client.recv() == "Received ping with 4 bytes"
    client.pong(b"12")
    assert client.recv() == "Received pong with 2 bytes"
    client.close()


def test_autobahn_echo_returns_everything_unchanged_on_any_path(example):
    base = example("autobahn")
    with connect(f"{base}/runCase?case=1&agent=test", max_size=None) as ws:
        big = os.urandom(2 * 1024 * 1024)  # above the default limit, within the raised one
        ws.send(big)
        assert ws.recv() == big
        ws.send("text")
        assert ws.recv() == "text"


def test_chat_server_broadcasts_to_everyone_else(example):
    base = example("chat_server")
    with connect(f"{base}/chat") as alice, connect(f"{base}/chat") as bob, connect(f"{base}/chat") as carol:
        ids = [client.recv().removeprefix("you are ") for client in (alice, bob, carol)]
        alice.send("hi all")
        assert bob.recv(timeout=5) == f"[{ids[0]}]: hi all"
        assert carol.recv(timeout=5) == f"[{ids[0]}]: hi all"
        with pytest.raises(TimeoutError):
            alice.recv(timeout=0.3)


def test_chat_room_fans_out_json_chat_messages(example):
    base = example("chat_room")
    with connect(f"{base}/chat/alice") as alice:
        first = {"user": "alice", "message": "first", "timestamp": 0}
        alice.send(json.dumps(first))  # her own copy proves she has joined the room
        assert json.loads(alice.recv(timeout=5)) == first
        with connect(f"{base}/chat/bob") as bob:
            hello = {"user": "bob", "message": "joined", "timestamp": 1}
            bob.send(json.dumps(hello))
            assert json.loads(bob.recv(timeout=5)) == hello
            assert json.loads(alice.recv(timeout=5)) == hello
            note = {"user": "alice", "message": "hello", "timestamp": 1634567890}
            alice.send(json.dumps(note))
            assert json.loads(alice.recv(timeout=5)) == note
            assert json.loads(bob.recv(timeout=5)) == note
            bob.send("{not json")
            assert "invalid JSON" in json.loads(bob.recv(timeout=5))["error"]
            with connect(f"{base}/chat/alice") as second_alice:
                with pytest.raises(ConnectionClosed):
                    second_alice.recv(timeout=5)
                assert second_alice.protocol.close_rcvd.code == 1008


def test_rooms(example):
    base = example("rooms")
    with connect(f"{base}/rooms") as a, connect(f"{base}/rooms") as b, connect(f"{base}/rooms") as c:
        a.send("/join red")
        assert a.recv() == "joined red (1 here)"
        b.send("/join red")
        assert b.recv() == "joined red (2 here)"
        c.send("/join blue")
        c.recv()
        a.send("red: anyone?")
        assert b.recv(timeout=5).endswith("> anyone?")
        c.send("red: let me in")
        assert c.recv() == "join red first"
        b.send("/leave red")
        assert b.recv() == "left red"
        b.send("/rooms")
        assert b.recv() == "(none)"
        a.send("red: alone now")
        with pytest.raises(TimeoutError):
            b.recv(timeout=0.3)


def test_authenticated_chat(example):
    base = example("authenticated_chat")
    with pytest.raises(InvalidStatus) as info:
        connect(f"{base}/secure-chat")
    assert info.value.response.status_code == 401
    with connect(f"{base}/secure-chat?token=secret-token") as ws:
        welcome = json.loads(ws.recv())
        assert welcome == {"type": "welcome", "user_id": "guest", "message": "Welcome to the authenticated channel!"}
        ws.send("hi")
        assert ws.recv() == "guest: hi"


def test_rate_limited(example):
    base = example("rate_limited")
    with connect(f"{base}/limited") as ws:
        for i in range(12):
            ws.send(f"m{i}")
        got = [ws.recv(timeout=5) for _ in range(12)]
        assert got[:10] == [f"Processed: m{i}" for i in range(10)]
        assert got[10:] == ["Rate limit exceeded. Please slow down."] * 2
    with connect(f"{base}/strict") as ws:
        with pytest.raises(ConnectionClosed):
            for i in range(50):
                ws.send(f"flood{i}")
                ws.recv(timeout=5)
        assert ws.protocol.close_rcvd.code == 1008


def test_graceful_shutdown_on_sigterm(example_process):
    process, base = example_process("graceful_shutdown")
    with connect(f"{base}/ws") as ws:
        ws.send("before")
        assert ws.recv() == "Echo: before"
        process.send_signal(signal.SIGTERM)
        assert ws.recv(timeout=10) == "Shutting down gracefully..."
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (1001, "Server shutdown")
    assert process.wait(15) == 0


def test_stats_example(example):
    base = example("stats")
    with connect(f"{base}/echo") as echo, connect(f"{base}/stats") as stats:
        echo.send("x")
        echo.recv()
        snapshot = json.loads(stats.recv(timeout=5))
        assert snapshot["open_connections"] == 2
        assert {"messages_in", "bytes_out", "close_codes", "outbox_bytes"} <= set(snapshot)


@pytest.mark.parametrize("host", ["ignitia-sync", "gunicorn", "werkzeug"])
def test_flask_app_serves_pages_and_websockets_on_one_port(host):
    port = free_port()
    # As its docstring runs it: ignitia-sync, gunicorn with two workers, or `flask run`.
    with running(host_command(host, "examples.flask_app:app", port, workers=2), port):
        base, http_base = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{http_base}/", timeout=10) as response:
            assert f"Echo at {base}/ws/echo" in response.read().decode()
        with urllib.request.urlopen(f"{http_base}/signin/erin", timeout=10) as response:
            cookie = response.headers["Set-Cookie"].split(";")[0]
        for _ in range(4):  # under gunicorn, any of the workers: the signed cookie is enough
            with connect(f"{base}/ws/hello", additional_headers={"Cookie": cookie}) as ws:
                assert ws.recv(timeout=10) == "hello erin"
        with connect(f"{base}/ws/echo") as ws:
            ws.send("flask")
            assert ws.recv(timeout=10) == "flask"
