"""The Redis backplane against a real redis-server: rooms, send_to and faults across processes.

redis-server is Debian's package (``.ci/run`` installs it); each test starts its own on a
free port and stops it. The chat servers are ``examples/redis_chat.py``, each in its own
process, and the clients are python-websockets.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from websockets.sync.client import ClientConnection, connect

from ignitia_sync import Message
from ignitia_sync.redis import Emitter, decode, encode
from ignitia_sync.redis.link import LinkState
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.subprocess_server import ROOT, free_port, host_command, running
from tests.waiting import wait_for


class ChatProcess:
    """examples/redis_chat.py in its own process; its output is kept for the assertions."""

    def __init__(self, url: str, sharded: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "examples/redis_chat.py", "--port", "0"], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": ROOT, "REDIS_URL": url,
                 "REDIS_SHARDED": "1" if sharded else ""},
        )
        self.lines: list[str] = []
        found = threading.Event()
        self.base = ""

        def drain() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line)
                match = re.search(r"ws://[\d.]+:\d+", line)
                if match and not self.base:
                    self.base = match.group(0)
                    found.set()

        threading.Thread(target=drain, daemon=True).start()
        assert found.wait(30), "chat process did not start:\n" + "".join(self.lines)

    def stats(self) -> dict[str, object]:
        with connect(f"{self.base}/stats") as ws:
            return dict(json.loads(ws.recv(timeout=10)))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(20) == 0, "".join(self.lines)
        assert "Traceback" not in "".join(self.lines), "".join(self.lines)


@contextlib.contextmanager
def chat_processes(url: str, count: int, sharded: bool = False) -> Iterator[list[ChatProcess]]:
    processes = [ChatProcess(url, sharded) for _ in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


wait_until = functools.partial(wait_for, timeout=15.0)  # processes of their own: a longer wait


def join(base: str, room: str, user: str) -> ClientConnection:
    ws = connect(f"{base}/chat/{room}/{user}", open_timeout=10)
    assert ws.recv(timeout=10) == f"* {user} joined {room}"  # its own join, at least
    return ws


def settle(*members: tuple[str, ClientConnection]) -> None:
    """Skip the join notices still on their way: each member says "settle", each reads until it heard all.

    A join notice races with the other processes' subscriptions: it reaches them or not. One that
    does comes before its process's next message (a process publishes in order), so once every
    member has heard every "settle", no notice is left to come. Call it once all are subscribed.
    """
    for _, ws in members:
        ws.send("settle")
    expected = {f"{user}: settle" for user, _ in members}
    for _, ws in members:
        heard: set[str] = set()
        while heard != expected:
            text = ws.recv(timeout=10)
            if text in expected:
                heard.add(text)
            else:
                assert re.fullmatch(r"\* \S+ joined \S+", text), f"not a join notice: {text!r}"


@pytest.mark.parametrize("count", [2, 4])
def test_every_member_gets_every_message_in_order_across_processes(redis_server, count):
    with chat_processes(redis_server.url, count) as processes:
        members = []
        for i, process in enumerate(processes * 2):  # two members per process
            members.append((f"user{i}", join(process.base, "lobby", f"user{i}")))
        wait_until(lambda: redis_server.subscribers("ignitia:room:lobby") == count, what="every process subscribed")
        settle(*members)
        per_sender = 10
        for n in range(per_sender):
            for _, ws in members:
                ws.send(f"{n}")
        expected = {user: [f"{user}: {n}" for n in range(per_sender)] for user, _ in members}
        for _, ws in members:
            got: dict[str, list[str]] = {user: [] for user, _ in members}
            for _ in range(per_sender * len(members)):
                text = ws.recv(timeout=10)
                got[text.split(":")[0]].append(text)
            assert got == expected  # all of them, and in order per sender
        for _, ws in members:
            ws.close()
        for process in processes:
            stats = process.stats()
            assert stats["up"] is True and stats["dropped"] == 0 and stats["rejected"] == 0
            assert stats["published"] >= per_sender * 2  # its two members' messages went out


def test_send_to_reaches_an_id_in_another_process(redis_server):
    with chat_processes(redis_server.url, 2) as (first, second):
        alice = join(first.base, "a", "alice")
        bob = join(second.base, "b", "bob")
        wait_until(lambda: redis_server.client().get("{ignitia}:id:bob") is not None, what="bob in the directory")
        alice.send("@bob hello from the other process")
        assert bob.recv(timeout=10) == "alice (to you): hello from the other process"
        alice.send("@nobody are you there?")  # handed to the backplane, which counts it
        wait_until(lambda: first.stats()["unknown_ids"] == 1, what="the unknown id counted")
        bob.close()
        wait_until(lambda: redis_server.client().get("{ignitia}:id:bob") is None, what="bob forgotten")
        alice.close()


def test_a_process_listens_to_a_room_only_while_it_has_members_there(redis_server):
    with chat_processes(redis_server.url, 1) as (only,):
        for _ in range(2):  # join, leave, join again
            pia = join(only.base, "attic", "pia")
            wait_until(lambda: redis_server.subscribers("ignitia:room:attic") == 1, what="subscribed")
            pia.close()
            wait_until(lambda: redis_server.subscribers("ignitia:room:attic") == 0, what="unsubscribed")
        assert only.stats()["reconnects"] == 0


def test_a_graceful_stop_takes_its_ids_out_of_the_directory(redis_server):
    process = ChatProcess(redis_server.url)
    olga = join(process.base, "hall", "olga")
    wait_until(lambda: redis_server.client().get("{ignitia}:id:olga") is not None, what="olga registered")
    process.stop()  # SIGTERM while olga is still connected
    assert redis_server.client().get("{ignitia}:id:olga") is None
    olga.close()


def test_an_emitter_in_a_third_process_reaches_rooms_and_ids(redis_server):
    with chat_processes(redis_server.url, 2) as (first, second):
        carol, dan = join(first.base, "news", "carol"), join(second.base, "news", "dan")
        wait_until(lambda: redis_server.subscribers("ignitia:room:news") == 2, what="both subscribed")
        settle(("carol", carol), ("dan", dan))
        emitter = Emitter(redis_server.url)  # this test process serves no WebSockets
        assert emitter.broadcast("the report is ready", room="news") == 2
        assert carol.recv(timeout=10) == dan.recv(timeout=10) == "the report is ready"
        assert emitter.send_to("dan", b"\x00binary") is True
        assert dan.recv(timeout=10) == b"\x00binary"
        assert emitter.send_to("nobody", "lost") is False
        emitter.close()
        carol.close()
        dan.close()


def test_a_room_message_said_while_redis_restarts_reaches_every_process_once_it_is_back(redis_server):
    with chat_processes(redis_server.url, 2) as (first, second):
        erin, frank = join(first.base, "ops", "erin"), join(second.base, "ops", "frank")
        wait_until(lambda: redis_server.subscribers("ignitia:room:ops") == 2, what="both subscribed")
        settle(("erin", erin), ("frank", frank))
        redis_server.kill()
        wait_until(lambda: first.stats()["up"] is False, what="the first process to see Redis down")
        erin.send("while Redis is down")  # kept: a room's messages are ordered by Redis, in every process
        wait_until(lambda: first.stats()["pending"] >= 1, what="the message kept")
        redis_server.start()  # empty: no subscriptions, no directory, no room logs (a new epoch)
        assert erin.recv(timeout=10) == "erin: while Redis is down"  # her own too, in its order
        assert frank.recv(timeout=10) == "erin: while Redis is down"
        wait_until(lambda: first.stats()["up"] is True and second.stats()["up"] is True, what="both back")
        wait_until(lambda: redis_server.subscribers("ignitia:room:ops") == 2, what="both resubscribed")
        assert first.stats()["reconnects"] >= 1 and first.stats()["dropped"] == 0
        for sender, receiver, name in ((erin, frank, "erin"), (frank, erin, "frank")):  # no process deaf
            sender.send("after")
            texts = [receiver.recv(timeout=10)]
            while texts[-1] != f"{name}: after":
                texts.append(receiver.recv(timeout=10))
        assert frank.recv(timeout=10) == "frank: after"  # his own (erin read hers before frank's)
        wait_until(lambda: redis_server.client().get("{ignitia}:id:frank") is not None, what="ids registered again")
        erin.send("@frank still there?")
        assert frank.recv(timeout=10) == "erin (to you): still there?"
        erin.close()
        frank.close()


def test_redis_closing_idle_clients_loses_nothing():
    server = RedisServer("--timeout", "1")  # Redis closes connections idle for a second
    server.start()
    try:
        with chat_processes(server.url, 2) as (first, second):
            gina, hal = join(first.base, "quiet", "gina"), join(second.base, "quiet", "hal")
            wait_until(lambda: server.subscribers("ignitia:room:quiet") == 2, what="both subscribed")
            settle(("gina", gina), ("hal", hal))
            for n in range(3):
                time.sleep(2.5)  # the publishing connections are closed meanwhile
                gina.send(f"after a pause {n}")
                assert hal.recv(timeout=10) == f"gina: after a pause {n}"
            assert first.stats()["dropped"] == 0 and first.stats()["up"] is True
            gina.close()
            hal.close()
    finally:
        server.kill()


def test_garbage_on_our_channels_is_rejected_and_counted(redis_server):
    with chat_processes(redis_server.url, 1) as (only,):
        ivy = join(only.base, "lab", "ivy")
        wait_until(lambda: redis_server.subscribers("ignitia:room:lab") == 1, what="subscribed")
        client = redis_server.client()
        client.publish("ignitia:room:lab", b"not an envelope")
        client.publish("ignitia:room:lab", b"Bt" + b"9" * 16 + b"\xff\xfe")  # a text that is not UTF-8
        client.publish("ignitia:room:lab", encode(b"B", Message.text("fine"), b"9" * 16))
        assert ivy.recv(timeout=10) == "fine"  # the bad ones never reached the member
        assert only.stats()["rejected"] == 2
        ivy.close()


def test_the_envelope_round_trips_and_refuses_what_is_not_ours():
    sender = b"a" * 16
    kind, who, id, message = decode(encode(b"D", Message.text("héllo"), sender, "zoë"))
    assert (kind, who, id, message) == (b"D", sender, "zoë", Message.text("héllo"))
    assert decode(encode(b"B", Message.binary(b"\x00\x01"), sender))[3] == Message.binary(b"\x00\x01")
    for bad in (b"", b"X" + b"t" + sender, b"Bq" + sender, b"D" + b"t" + sender + b"\x00\x09ab"):
        with pytest.raises(ValueError):
            decode(bad)


@pytest.mark.parametrize("preload", [False, True])
def test_gunicorn_four_workers_share_a_room_through_redis(redis_server, preload):
    port = free_port()
    command = host_command("gunicorn", "tests.scripts.flask_app:app", port, workers=4)
    if preload:  # the app (and its backplane object) made once in the master, then forked
        command.insert(1, "--preload")
    with running(command, port, {"IGNITIA_TEST_REDIS": redis_server.url}), contextlib.ExitStack() as stack:
        members: dict[str, list[ClientConnection]] = {}
        # The kernel spreads accepts over the workers (no stickiness needed), once they have
        # booted: on a loaded machine the first ones may take every connection for a while.
        deadline = time.monotonic() + 60
        for opened in itertools.count(1):
            ws = stack.enter_context(connect(f"ws://127.0.0.1:{port}/ws/worker/hall", open_timeout=10))
            members.setdefault(ws.recv(timeout=10), []).append(ws)
            if (len(members) == 4 and opened >= 8) or opened >= 200 or time.monotonic() > deadline:
                break
            if len(members) < 2 and opened >= 8:
                time.sleep(0.1)  # the other workers are still starting
        assert len(members) >= 2, f"every connection landed on one worker: {members.keys()}"
        wait_until(lambda: redis_server.subscribers("ignitia:room:hall") == len(members), what="every worker subscribed")
        everyone = [ws for group in members.values() for ws in group]
        sender_pid, (sender, *_) = next(iter(members.items()))
        sender.send("hello hall")
        for ws in everyone:  # members on every worker, the sender's own worker included
            assert ws.recv(timeout=10) == f"{sender_pid}: hello hall"


@pytest.fixture
def redis_cluster(tmp_path) -> Iterator[list[int]]:
    """A real 3-node Redis Cluster (no replicas), made with redis-cli --cluster create."""
    ports = [_cluster_port() for _ in range(3)]
    nodes = []
    for port in ports:
        nodes.append(subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    try:
        for port in ports:
            wait_until(lambda port=port: _pings(port), what=f"node {port}")
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60,
        )
        wait_until(lambda: all(redis.Redis(host="127.0.0.1", port=p).cluster("info").get("cluster_state") == "ok"
                               for p in ports), what="the cluster to be ok")
        yield ports
    finally:
        for node in nodes:
            node.kill()
            node.wait(10)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, below the ephemeral range."""
    import random
    import socket

    while True:
        port = random.randrange(12000, 22000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=port).ping())
    except redis.ConnectionError:
        return False


def test_sharded_pub_sub_on_a_three_node_cluster(redis_cluster):
    from redis.cluster import RedisCluster
    from redis.crc import key_slot

    url = f"redis://127.0.0.1:{redis_cluster[0]}/0"
    cluster = RedisCluster.from_url(url)
    # One room per shard, so that every shard carries traffic.
    rooms: dict[str, str] = {}
    for n in range(1000):
        node = cluster.get_node_from_key(f"ignitia:room:r{n}").name
        rooms.setdefault(node, f"r{n}")
    assert len(rooms) == 3
    with chat_processes(url, 2, sharded=True) as (first, second):
        pairs = []
        for room in rooms.values():
            left, right = join(first.base, room, f"{room}-a"), join(second.base, room, f"{room}-b")
            owner = cluster.get_node_from_key(f"ignitia:room:{room}")
            client = redis.Redis(host=owner.host, port=owner.port)
            channel = f"ignitia:room:{room}"
            assert key_slot(channel.encode()) == cluster.keyslot(channel)
            wait_until(lambda client=client, channel=channel: dict(client.execute_command("PUBSUB SHARDNUMSUB", channel))
                       .get(channel.encode()) == 2, what=f"both processes on {channel}'s shard")
            settle((f"{room}-a", left), (f"{room}-b", right))
            pairs.append((room, left, right))
        for room, left, right in pairs:
            left.send(f"hello {room}")
            assert right.recv(timeout=10) == f"{room}-a: hello {room}"
            right.send("back")
            assert left.recv(timeout=10) == f"{room}-a: hello {room}"  # its own, locally
            assert left.recv(timeout=10) == f"{room}-b: back"
            assert right.recv(timeout=10) == f"{room}-b: back"  # its own, locally
        room, left, right = pairs[0]
        wait_until(lambda: cluster.get(f"{{ignitia}}:id:{room}-b") is not None, what="the directory")
        left.send(f"@{room}-b psst")
        assert right.recv(timeout=10) == f"{room}-a (to you): psst"
        emitter = Emitter(url, sharded=True)
        assert emitter.broadcast("from a job", room=pairs[1][0]) == 2
        assert pairs[1][1].recv(timeout=10) == pairs[1][2].recv(timeout=10) == "from a job"
        emitter.close()
        for _, left, right in pairs:
            left.close()
            right.close()
        for room, _, _ in pairs:  # no members left: no shard carries these rooms to us any more
            owner = cluster.get_node_from_key(f"ignitia:room:{room}")
            client = redis.Redis(host=owner.host, port=owner.port)
            wait_until(lambda client=client, room=room: dict(client.execute_command(
                "PUBSUB SHARDNUMSUB", f"ignitia:room:{room}")).get(f"ignitia:room:{room}".encode()) == 0,
                what=f"{room} unsubscribed")
        assert first.stats()["dropped"] == 0 and second.stats()["rejected"] == 0
        assert first.stats()["reconnects"] == 0 and second.stats()["reconnects"] == 0


def test_flask_run_dev_servers_share_a_room_through_redis(redis_server):
    """Werkzeug's threaded dev server: each WebSocket in its own thread, the backplane in its own."""
    ports = [free_port(), free_port()]
    env = {"IGNITIA_TEST_REDIS": redis_server.url}
    with contextlib.ExitStack() as stack:
        for port in ports:
            stack.enter_context(running(host_command("werkzeug", "tests.scripts.flask_app", port), port, env))
        first = stack.enter_context(connect(f"ws://127.0.0.1:{ports[0]}/ws/worker/den", open_timeout=10))
        second = stack.enter_context(connect(f"ws://127.0.0.1:{ports[1]}/ws/worker/den", open_timeout=10))
        first_pid, second_pid = first.recv(timeout=10), second.recv(timeout=10)
        wait_until(lambda: redis_server.subscribers("ignitia:room:den") == 2, what="both dev servers subscribed")
        first.send("from the first")
        assert second.recv(timeout=10) == f"{first_pid}: from the first"
        assert first.recv(timeout=10) == f"{first_pid}: from the first"
        second.send("and back")
        assert first.recv(timeout=10) == f"{second_pid}: and back"


def test_a_process_that_stops_reading_is_cut_by_redis_and_comes_back():
    # Redis's pubsub output-buffer limit, made small: a subscriber 256 KiB behind is dropped.
    server = RedisServer("--client-output-buffer-limit", "pubsub 256kb 128kb 1")
    server.start()
    try:
        with chat_processes(server.url, 2) as (stopped, other):
            mia, ned = join(stopped.base, "yard", "mia"), join(other.base, "yard", "ned")
            wait_until(lambda: server.subscribers("ignitia:room:yard") == 2, what="both subscribed")
            settle(("mia", mia), ("ned", ned))
            own_channel = "{ignitia}:proc:" + str(stopped.stats()["process"])
            stopped.process.send_signal(signal.SIGSTOP)  # it reads nothing from now on
            try:
                flood = encode(b"D", Message.binary(b"x" * 2048), b"9" * 16, "ghost")  # for an id it does not have
                client = server.client()
                for _ in range(20):  # 20 MiB: more than the kernel's socket buffers hold
                    pipe = client.pipeline(transaction=False)
                    for _ in range(500):
                        pipe.publish(own_channel, flood)
                    pipe.execute()
                wait_until(lambda: server.subscribers(own_channel) == 0, what="Redis to cut the stalled subscriber")
            finally:
                stopped.process.send_signal(signal.SIGCONT)
            wait_until(lambda: stopped.stats()["reconnects"] >= 1 and stopped.stats()["up"] is True, what="it to reconnect")
            wait_until(lambda: server.subscribers("ignitia:room:yard") == 2, what="it to subscribe again")
            ned.send("are you back?")
            assert mia.recv(timeout=10) == "ned: are you back?"  # not deaf afterwards
            mia.close()
            ned.close()
    finally:
        server.kill()


def test_a_hosts_shutdown_keeps_the_backplane_until_its_last_handler_returns(redis_server):
    """What a handler broadcasts while it winds down after the 1001 still reaches other processes."""

    from ignitia_sync import Message, Router
    from ignitia_sync.testing import TestClient
    from ignitia_sync.wsgi import WebSocketMiddleware

    def member(ws):
        ws.join("ops")
        ws.send_text("joined")
        for _ in ws:
            pass
        ws.registry.broadcast(Message.text(f"{ws.request.path} left"), room="ops")  # after its 1001

    def http(environ, start_response):
        start_response("404 Not Found", [])
        return [b""]

    leaving = WebSocketMiddleware(http, Router().websocket("/leaving", member), backplane=redis_server.url)
    staying = WebSocketMiddleware(http, Router().websocket("/staying", member), backplane=redis_server.url)
    try:
        with TestClient(leaving) as a, TestClient(staying) as b:
            gone = a.connect("/leaving")
            here = b.connect("/staying")
            assert gone.recv(timeout=5).data == here.recv(timeout=5).data == "joined"
            wait_for(lambda: redis_server.subscribers("ignitia:room:ops") == 2, "both backplanes subscribed")
            leaving.shutdown()
            assert gone.recv(timeout=5) == Message.close_with_reason(1001, "Server shutdown")
            assert here.recv(timeout=5) == Message.text("/leaving left")
    finally:
        # The app owns its backplane, not the TestClient: left running, it would go on
        # reconnecting to this test's Redis, gone after it, and log into later tests.
        staying.shutdown()
        leaving.shutdown()


def test_an_id_enters_the_directory_only_once_its_process_hears_its_own_channel(redis_server):
    """Else a send_to in that window would be published to nobody (a process starting under load)."""

    from ignitia_sync.redis import RedisBackplane

    redis_server.kill()  # Redis comes up after the process: listener and publisher race to reconnect
    backplane = RedisBackplane(redis_server.url)
    backplane.attach(lambda message, room: None, lambda id, message: None)
    backplane.identified("early")
    wait_for(lambda: backplane._link is LinkState.DOWN, "a first attempt to fail")  # so they reconnect, and race
    redis_server.start()
    client = redis_server.client()
    own = b"{ignitia}:proc:" + backplane.uid
    try:
        wait_for(lambda: client.get("{ignitia}:id:early") is not None, "the id in the directory", timeout=20,
                 interval=0.001)  # look at the subscription the moment the id appears
        assert client.pubsub_numsub(own) == [(own, 1)]
    finally:
        backplane.close()
