"""Flask with WebSocket routes (ignitia_sync.flask.Sock), served for real in a subprocess."""

from __future__ import annotations

import os
import pathlib
import time
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.sync.client import connect

from tests.subprocess_server import free_port, host_command, running


@pytest.fixture(params=["ignitia-sync", "gunicorn", "werkzeug"])
def base(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    with running(host_command(request.param, "tests.scripts.flask_app:app", port), port):
        yield f"127.0.0.1:{port}"


def login(base: str, name: str) -> str:
    with urllib.request.urlopen(f"http://{base}/login/{name}", timeout=10) as response:
        assert response.read() == b"logged in"
        return response.headers["Set-Cookie"].split(";")[0]


def test_url_for_and_http_routes_work_beside_websocket_routes(base):
    with urllib.request.urlopen(f"http://{base}/", timeout=10) as response:
        # WebSocket rules build absolute ws:// URLs, ready for the page's JavaScript.
        assert response.read() == f"rooms at ws://{base}/ws/room/lobby, counting at ws://{base}/ws/count/3".encode()


def test_the_handler_runs_in_the_request_context_with_session_and_login(base):
    cookie = login(base, "alice")
    with connect(f"ws://{base}/ws/room/kitchen", additional_headers={"Cookie": cookie}) as alice, \
         connect(f"ws://{base}/ws/room/kitchen") as stranger:
        assert alice.recv(timeout=10) == "hello alice (alice) in kitchen at /ws/room/kitchen"
        assert stranger.recv(timeout=10) == "hello None (anonymous) in kitchen at /ws/room/kitchen"
        alice.send("hi all")
        assert alice.recv(timeout=10) == "alice: hi all"
        assert stranger.recv(timeout=10) == "alice: hi all"  # the room is the registry's


def test_login_required_refuses_before_the_upgrade(base):
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://{base}/ws/private")
    assert info.value.response.status_code == 401
    with connect(f"ws://{base}/ws/private", additional_headers={"Cookie": login(base, "bob")}) as ws:
        assert ws.recv(timeout=10) == "only for bob"


def test_blueprints_converters_and_flask_socks_close(base):
    with connect(f"ws://{base}/ws/count/3") as ws:
        assert [ws.recv(timeout=10) for _ in range(3)] == ["0", "2", "4"]
        with pytest.raises(ClientClosed):
            ws.recv(timeout=10)
        assert ws.protocol.close_rcvd is not None
        assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (1000, "counted")


def test_a_4_mib_message_through_flask_sock_style_receive(base):
    with connect(f"ws://{base}/ws/echo", max_size=None) as ws:
        big = os.urandom(4 << 20)
        ws.send(big)
        assert ws.recv(timeout=30) == big


@pytest.fixture
def werkzeug_reloading(tmp_path) -> Iterator[tuple[str, pathlib.Path]]:
    """``flask run --reload``: Werkzeug's dev server with its reloader, watching one extra file."""
    watched = tmp_path / "watched.txt"
    watched.write_text("0")
    port = free_port()
    command = [*host_command("werkzeug", "tests.scripts.flask_app", port), "--reload", "--extra-files", str(watched)]
    with running(command, port):
        yield f"127.0.0.1:{port}", watched


def test_werkzeug_reload_closes_websockets_with_1001_and_serves_again(werkzeug_reloading):
    base, watched = werkzeug_reloading
    with connect(f"ws://{base}/ws/echo") as ws:
        ws.send("before")
        assert ws.recv(timeout=10) == "before"
        # The reloader polls file times once a second, from its first scan on, which may come
        # late under load (it stats every imported module): the file changes each second until seen.
        for touch in range(1, 31):
            watched.write_text(str(touch))
            try:
                ws.recv(timeout=1)
            except TimeoutError:
                continue
            except ClientClosed:
                break
            pytest.fail("a message came instead of the close")
        else:
            pytest.fail("the reloader did not restart the server in 30 s")
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1001  # not 1006
    deadline = time.monotonic() + 30
    while True:  # the new process serves the same routes
        try:
            with connect(f"ws://{base}/ws/echo", open_timeout=5) as ws:
                ws.send("after")
                assert ws.recv(timeout=10) == "after"
            break
        except (OSError, InvalidStatus, InvalidMessage):  # the old process may still take one
            assert time.monotonic() < deadline, "the reloaded server did not come back"
            time.sleep(0.2)


@pytest.mark.parametrize("base", ["werkzeug"], indirect=True)
def test_werkzeug_threads_and_descriptors_are_released_after_each_websocket(base):
    def resources() -> tuple[int, int]:
        with urllib.request.urlopen(f"http://{base}/resources", timeout=10) as response:
            fds, threads = response.read().split()
            return int(fds), int(threads)

    def settled() -> tuple[int, int]:
        """The counts once the last request's thread has ended (they stop falling)."""
        last, deadline = resources(), time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = resources()
            if now == last:
                return now
            last = now
        return last

    with connect(f"ws://{base}/ws/echo") as ws:  # the first connection: lazy imports, logging
        ws.send("warm")
        ws.recv(timeout=10)
    before = settled()
    for i in range(30):  # each one is served by its own thread, with its own hub
        with connect(f"ws://{base}/ws/echo") as ws:
            ws.send(str(i))
            assert ws.recv(timeout=10) == str(i)
    after = settled()
    # No growth: a hub left behind per connection would add 2 descriptors each (60 here).
    assert after[0] <= before[0] and after[1] <= before[1], (before, after)


@pytest.mark.parametrize("base", ["werkzeug"], indirect=True)
def test_broadcasts_to_a_thread_that_blocks_its_hub_are_bounded_and_end_in_1008(base):
    """Under a threaded server a connection's broadcasts wait for its own thread's hub. What
    waits counts against outbox_limit (1 MiB): past it the rest are refused, memory stays
    flat, and the peer gets 1008 once its thread runs its hub again."""

    def rss_kib() -> int:
        with urllib.request.urlopen(f"http://{base}/rss", timeout=10) as response:
            return int(response.read())

    with connect(f"ws://{base}/ws/stuck/flood", max_size=None) as stuck, \
         connect(f"ws://{base}/ws/room/flood", max_size=None) as sender:
        assert stuck.recv(timeout=10) == "stuck"
        sender.recv(timeout=10)  # its greeting
        chunk = "x" * (64 << 10)
        sender.send(chunk)
        sender.recv(timeout=10)
        before = rss_kib()
        for _ in range(400):  # 25 MiB for the stuck thread; the sender gets each one at once
            sender.send(chunk)
            assert sender.recv(timeout=10) == f"None: {chunk}"
        grown = rss_kib() - before
        with urllib.request.urlopen(f"http://{base}/release", timeout=10) as response:
            assert response.read() == b"released"
        got = []
        with pytest.raises(ClientClosed):
            while True:
                got.append(stuck.recv(timeout=10))
        assert stuck.protocol.close_rcvd is not None
        assert (stuck.protocol.close_rcvd.code, stuck.protocol.close_rcvd.reason) == (1008, "slow consumer")
        assert len(got) < 400 and all(message == f"None: {chunk}" for message in got)
        # Without the bound, each waiting broadcast holds its text and its frame: 50 MiB.
        assert grown < 12 << 10, f"{grown} KiB more while the thread was blocked"
        sender.send("still here")  # everyone else is served meanwhile
        assert sender.recv(timeout=10) == "None: still here"


@pytest.mark.parametrize("base", ["werkzeug"], indirect=True)
def test_tiny_broadcasts_to_a_blocked_thread_are_bounded_by_what_each_hand_over_holds(base):
    """Each waiting hand-over also costs its callback: 10,000 broadcasts of 8 bytes are
    80 KB of frames but 2.6 MB held, so they pass outbox_limit (1 MiB) too."""
    with connect(f"ws://{base}/ws/stuck/tiny") as stuck, connect(f"ws://{base}/ws/room/tiny") as sender:
        assert stuck.recv(timeout=10) == "stuck"
        sender.recv(timeout=10)  # its greeting
        for _ in range(10_000):
            sender.send("")
        for _ in range(10_000):  # each one broadcast (the stuck thread's hand-overs are made)
            assert sender.recv(timeout=10) == "None: "
        with urllib.request.urlopen(f"http://{base}/release", timeout=10) as response:
            assert response.read() == b"released"
        got = 0
        with pytest.raises(ClientClosed):
            while stuck.recv(timeout=10) == "None: ":
                got += 1
        assert stuck.protocol.close_rcvd is not None and stuck.protocol.close_rcvd.code == 1008
        assert got < 5_000, got  # 1 MiB / (8 + 256) bytes: about 4,000 were handed over
