"""The benchmark suite: ignitia_sync against its peers, side by side in one run.

Each server runs in its own process; the load comes from ``loadgen.mjs`` (Node + ws), whose
own CPU time is printed so you can see it is not the bottleneck. The main figure is the
server's CPU time per message (utime + stime over the measured window ÷ messages), which
stays meaningful on a shared machine; ratios compare ignitia_sync with each peer.

Two of the peers are anchors, not alternatives a gevent user would pick: ``picows`` (Cython,
on uvloop; servers/picows_echo.py, needs ``pip install 'picows>=2.3' 'uvloop>=0.19'``, which
tox -e bench installs) and ``node-ws`` (Node's ws with bufferutil's C masking;
servers/node_ws.mjs, installed by ``npm ci``). They show how little a Python process, and a
Node one, can spend per message; ``ignitia_sync-pure-python`` (IGNITIA_SYNC_PURE_PYTHON=1:
none of our C code) runs next to ours in E1, E1p, E2, E3, B1 and I1, and the lines under each
table compare both with picows (and ours with node-ws, p50 included).

    tox -e bench                                  # everything
    python tests/benchmarks/run.py --only E2 E3   # some scenarios
    python tests/benchmarks/run.py --servers ignitia_sync websockets-asyncio --rounds 3
    python tests/benchmarks/run.py --only E1 E2 E3 --servers ignitia_sync ignitia_sync-gunicorn flask-sock-gunicorn
    python tests/benchmarks/run.py --only E1 E1p E2 B1 I1 --servers ignitia_sync picows node-ws   # the anchors
    python tests/benchmarks/run.py --only R1                   # fan-out across processes (Redis)
    python tests/benchmarks/run.py --only R1 --fanout-size 2 40 20 5000   # a quick try of R1
    python tests/benchmarks/run.py --only C1 C1p --rounds 3    # our client against the peers' clients
    tox -e bench -- --only C1 C1p --rounds 3

A server whose ``ws://`` line names a ``worker pid`` (gunicorn) is measured there (CPU
time and RSS): the worker does the work, not the process run.py started.

R1 (ignitia_sync only; needs redis-server and redis-py) starts its own redis-server and
compares 1,000 broadcast receivers spread over 4 processes on the Redis backplane with the
same 1,000 on one process, next to Redis's own pub/sub rate (redis_pubsub.py).

C1 turns it around: the measured process is the *client* (a program in ``clients/``, each
reporting its own CPU time over the window), against one echo server that is none of the
contestants (``echo_server.mjs``, Node + ws), whose CPU time is shown too. C1p is C1 with
the client pinned to one core and the server to another (see ClientScenario.pin); E1p is
E1 with the server on CPU 0 and the load generator on CPU 1 (see Scenario.pin).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

HERE = pathlib.Path(__file__).parent
TICK = os.sysconf("SC_CLK_TCK")

SERVERS = {
    "ignitia_sync": "ignitia.py",
    "websockets-sync": "websockets_sync.py",
    "websockets-asyncio": "websockets_asyncio.py",
    "simple-websocket": "simple_websocket_gevent.py",
    "gevent-websocket": "gevent_websocket.py",
    "ignitia_sync-gunicorn": "ignitia_gunicorn.py",
    "flask-sock-gunicorn": "flask_sock_gunicorn.py",
    "gevent-floor": "gevent_floor.py",
    # Anchors (peers in the tables): see ANCHORS.
    "picows": "picows_echo.py",
    "node-ws": "node_ws.mjs",
}
#: Peers of another kind: picows (Cython on uvloop) and Node's ws with bufferutil, the cost
#: per message of a fast Python process and of a Node one. Run as peers ("ours ÷ peer").
ANCHORS = {"picows", "node-ws"}
OURS = "ignitia_sync"
#: ignitia_sync with IGNITIA_SYNC_PURE_PYTHON=1: without our C accelerator (nor websockets'
#: C unmasking), pure Python: run in E1, E1p, E2, E3, B1 and I1, next to ours and the anchors.
PURE = "ignitia_sync-pure-python"
#: ignitia_sync serving Prometheus metrics at /metrics, scraped every SCRAPE_INTERVAL during
#: the measurement (15 times as often as Prometheus' default): what metrics cost a server.
METRICS = "ignitia_sync-metrics"
SCRAPE_INTERVAL = 1.0
#: ignitia_sync with presence on, each idle connection a user in one room (I1: memory with presence).
PRESENCE = "ignitia_sync-presence"
#: ignitia_sync with coalesce_writes=False: every send() written before it returns (E2: what coalescing saves).
NO_COALESCE = "ignitia_sync-no-coalesce"
ENVIRONMENTS = {PURE: {"IGNITIA_SYNC_PURE_PYTHON": "1"}, METRICS: {"IGNITIA_BENCH_METRICS": "1"},
                PRESENCE: {"IGNITIA_BENCH_PRESENCE": "1"}, NO_COALESCE: {"IGNITIA_BENCH_COALESCE": "0"}}
#: ignitia_sync's flask-sock-compatible Sock in a Flask app under gunicorn's gevent worker.
GUNICORN = "ignitia_sync-gunicorn"
#: The least CPU per message a blocking-style server on gevent can cost (a bare frame echo:
#: see servers/gevent_floor.py): a reference row, neither ours nor a peer.
FLOOR = "gevent-floor"
#: Variants of ours, and the floor: not peers, so no "ours ÷ peer" ratio for them.
VARIANTS = {*ENVIRONMENTS, GUNICORN, FLOOR}
#: Servers with an /echo route only (a Flask app each, under gunicorn's default 1,000
#: worker connections; the floor echoes on any path): they run in the echo scenarios only.
ECHO_ONLY = {GUNICORN, "flask-sock-gunicorn", FLOOR}
#: (variant, baseline, target): variant ÷ baseline on CPU per message, printed under each
#: table where both ran (a None target: shown, not judged). Ours under gunicorn against
#: flask-sock's documented gevent deployment and against our own standalone server; the
#: floor against flask-sock (about the best ratio a blocking-style server on gevent can
#: reach) and ours against the floor (what our WebSocket work costs on top of gevent's).
#: Ours and the pure-Python variant against picows (ours: target at most picows' cost), and
#: ours against node-ws, shown with its p50 (E1: the round trip against Node's); the
#: pure-Python variant and the one without write coalescing against ours (what each saves).
COMPARISONS: list[tuple[str, str, float | None]] = [
    (GUNICORN, "flask-sock-gunicorn", 0.5), (GUNICORN, OURS, 1.15),
    (FLOOR, "flask-sock-gunicorn", None), (GUNICORN, FLOOR, None), (METRICS, OURS, 1.05),
    (OURS, "picows", 1.0), (PURE, "picows", None), (OURS, "node-ws", None), (PURE, OURS, None),
    (NO_COALESCE, OURS, None),
]


@dataclass
class Scenario:
    name: str
    title: str
    mode: str
    args: list[str]
    path: str
    also: tuple[str, ...] = ()  # extra variants of ours, for this scenario only
    #: The server on CPU 0 only, the load generator on CPU 1 (2 cores or more), as C1p pins:
    #: neither moves between cores nor waits for the other's core.
    pin: bool = False


SCENARIOS = [
    Scenario("E1", "1 conn, 1 in flight, 32 B text (latency)", "echo", ["1", "1", "32", "0", "0.5", "3"], "/echo",
             also=(PURE,)),
    Scenario("E1p", "E1 pinned: the server on one core, the load generator on another", "echo",
             ["1", "1", "32", "0", "0.5", "3"], "/echo", also=(PURE,), pin=True),
    Scenario("E2", "50 conns x 8 in flight, 32 B text", "echo", ["50", "8", "32", "0", "0.5", "3"], "/echo",
             also=(PURE, NO_COALESCE, METRICS)),
    Scenario("E3", "10 conns x 4 in flight, 16 KiB binary", "echo", ["10", "4", "16384", "1", "0.5", "3"], "/echo",
             also=(PURE,)),
    Scenario("B1", "1 sender, 500 receivers, 200 x 64 B broadcasts", "bcast", ["500", "200", "64", "0"], "/broadcast",
             also=(PURE, METRICS)),
    # Paced so that neither the server nor the client is saturated (25,000 deliveries/s):
    # the time until the last receiver has a broadcast, not a queue, is measured.
    Scenario("B1p", "B1 paced: one broadcast every 20 ms (fan-out latency)", "bcast", ["500", "200", "64", "20"],
             "/broadcast"),
    Scenario("B2", "1 sender, 1,000 receivers, 100 x 64 B broadcasts", "bcast", ["1000", "100", "64", "0"], "/broadcast"),
    Scenario("I1", "5,000 idle connections", "idle", ["5000", "100"], "/echo", also=(PURE, PRESENCE)),
]


@dataclass
class Result:
    server: str
    messages: int = 0
    elapsed: float = 0.0
    server_cpu: float = 0.0  # of the measured process (in C1: the client)
    client_cpu: float = 0.0  # of the other side (in C1: the echo server)
    p50_us: float | None = None
    p99_us: float | None = None
    fairness: float | None = None
    rss_per_conn_kib: float | None = None
    alive: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_per_msg_us(self) -> float:
        return self.server_cpu / self.messages * 1e6 if self.messages else float("inf")

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed if self.elapsed else 0.0


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid: int) -> int:
    found = re.search(r"VmRSS:\s+(\d+) kB", pathlib.Path(f"/proc/{pid}/status").read_text())
    return int(found.group(1)) if found else 0


#: prctl(2), looked up before any fork: PR_SET_PDEATHSIG in the children (see die_with_us).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1


def die_with_us() -> None:
    """``preexec_fn``: the child is killed when run.py ends, even by SIGKILL (nothing outlives a run)."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(name: str) -> list[str]:
    """How a server is started (before ``--port N``): its script in servers/, run by Node for
    a ``.mjs`` one and by this Python otherwise; a variant of ours runs ours."""
    script = HERE / "servers" / SERVERS.get(name, SERVERS[OURS])
    return ["node" if script.suffix == ".mjs" else sys.executable, str(script)]


def start_server(name: str, env: dict[str, str] | None = None,
                 cpu: int | None = None) -> tuple[subprocess.Popen[str], int, int]:
    """The server's process, its port, and the pid to measure (a gunicorn server's worker);
    with ``cpu``, the server runs on that CPU only (see pinned_to)."""
    port = free_port()
    process = subprocess.Popen(
        [*server_command(name), "--port", str(port)],
        env={**os.environ, **ENVIRONMENTS.get(name, {}), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=pinned_to(cpu),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "ws://" not in line:
        process.kill()
        raise RuntimeError(f"{name} did not start: {line!r}")
    worker = re.search(r"worker pid (\d+)", line)
    pid = int(worker.group(1)) if worker else process.pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return process, port, pid


def stop_server(process: subprocess.Popen[str], pid: int) -> None:
    """SIGTERM (gunicorn's arbiter stops its worker), then SIGKILL; a worker left over is killed too."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        if pid != process.pid:  # the killed arbiter did not stop its worker
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Kill a helper (a load generator) that is still running, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait()


class Scraper:
    """Reads a server's /metrics every SCRAPE_INTERVAL seconds in a thread, as Prometheus would."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.scrapes = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        """Stop; how many scrapes succeeded (each must answer 200 with our metrics in it)."""
        self._stop.set()
        self._thread.join(10)
        return self.scrapes

    def _run(self) -> None:
        # As Prometheus would: the first scrape one interval in (a run shorter than that has none:
        # metrics add no per-message work, only each scrape's).
        while not self._stop.wait(SCRAPE_INTERVAL):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as answer:
                    if b"ignitia_sync_connections_open" not in answer.read():
                        raise RuntimeError("no ignitia_sync metrics in the answer")
            except Exception as exc:  # reported as the run's error: a run without scrapes proves nothing
                self.error = f"{self.url}: {exc!r}"
                return
            self.scrapes += 1


def run_one(scenario: Scenario, name: str) -> Result:
    pin = scenario.pin and (os.cpu_count() or 1) >= 2
    server, port, pid = start_server(name, cpu=0 if pin else None)
    result = Result(name)
    gen: subprocess.Popen[str] | None = None
    try:
        url = f"ws://127.0.0.1:{port}{scenario.path}"
        gen = subprocess.Popen(
            ["node", str(HERE / "loadgen.mjs"), scenario.mode, url, *scenario.args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=pinned_to(1 if pin else None),
        )
        assert gen.stdout is not None and gen.stdin is not None
        cpu0 = cpu1 = 0.0
        rss0 = rss_kib(pid)
        scraper = Scraper(port) if name == METRICS else None
        for line in gen.stdout:
            event = json.loads(line)
            if event.get("mark") == "start":
                cpu0 = cpu_seconds(pid)
                if scraper is not None:
                    scraper.start()
            elif event.get("mark") == "end":
                cpu1 = cpu_seconds(pid)
                if scraper is not None:
                    result.extra["scrapes"] = scraper.stop()
                    if scraper.error:
                        result.error = scraper.error
            elif event.get("mark") == "opened":
                time.sleep(1.0)
                result.extra["rss_after"] = rss_kib(pid)
                gen.stdin.write("go\n")
                gen.stdin.flush()
            elif "result" in event:
                result.messages = int(event["messages"])
                result.elapsed = float(event["elapsed"])
                result.client_cpu = float(event["client_cpu"])
                result.p50_us, result.p99_us = event.get("p50_us"), event.get("p99_us")
                result.fairness = event.get("fairness")
                result.alive = event.get("alive")
                if "rss_after" in result.extra and result.messages:
                    result.rss_per_conn_kib = (result.extra["rss_after"] - rss0) / result.messages
                if event.get("requested") and event["messages"] < event["requested"]:
                    result.error = f"opened {event['messages']} of {event['requested']} in 60 s"
                if "expected" in event and event["messages"] != event["expected"]:
                    result.error = f"delivered {event['messages']} of {event['expected']}"
        if gen.wait(120) != 0:
            result.error = f"load generator exited {gen.returncode}"
        result.server_cpu = cpu1 - cpu0
    except Exception as exc:  # a failing peer must not end the whole run
        result.error = repr(exc)
    finally:
        if gen is not None:
            stop_process(gen)
        stop_server(server, pid)
    return result


# -- C1: the client is measured ---------------------------------------------------------------

#: C1's contestants: a program in clients/ and its extra arguments. Every one keeps INFLIGHT
#: messages in flight per connection and reports its own CPU time (getrusage) over the window.
CLIENTS = {
    # 50 greenlets in one thread, not monkey-patched.
    "ignitia_sync": ["ignitia_sync_client.py"],
    # One OS thread (and gevent hub) per connection.
    "ignitia_sync-threads": ["ignitia_sync_client.py", "--threads"],
    "websockets-sync": ["websockets_sync_client.py"],
    "websocket-client": ["websocket_client_client.py"],
    # skip_utf8_validation=True, as websocket-client's README advises for speed (no UTF-8 check).
    "websocket-client-skip-utf8": ["websocket_client_client.py", "--skip-utf8"],
}
#: Variants of our client: not peers, so neither "ours ÷ peer" nor "the better peer".
CLIENT_VARIANTS = {"ignitia_sync-threads"}


@dataclass
class ClientScenario:
    name: str
    title: str
    args: list[str]  # CONNS INFLIGHT SIZE BINARY WARMUP_S WINDOW_S, as E2's load generator takes
    target: float  # ours ÷ the better peer, client CPU per message: at most this
    #: The client on CPU 0 only, the echo server on CPU 1 (2 cores or more). A client's
    #: threads then take turns on one core; unpinned, on a quiet multi-core machine, they
    #: run in parallel and pass the GIL back and forth, which costs the one-thread-per-
    #: connection clients several times more CPU per message (futex calls, kernel time).
    pin: bool = False


CLIENT_SCENARIOS = [
    ClientScenario("C1", "client CPU: 50 conns x 8 in flight, 32 B text, against one Node ws echo server",
                   ["50", "8", "32", "0", "0.5", "3"], 0.5),
    ClientScenario("C1p", "C1 pinned: the client on one core, the echo server on another",
                   ["50", "8", "32", "0", "0.5", "3"], 0.5, pin=True),
]


def pinned_to(cpu: int | None) -> Any:
    """``preexec_fn``: die_with_us, and run on CPU ``cpu`` only (None: anywhere)."""
    def preexec() -> None:
        die_with_us()
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return preexec


def start_echo_server(cpu: int | None = None) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        ["node", str(HERE / "echo_server.mjs")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=pinned_to(cpu),
    )
    assert process.stdout is not None
    found = re.search(r"ws://127\.0\.0\.1:(\d+)", process.stdout.readline())
    if not found:
        stop_process(process)
        raise RuntimeError("the echo server did not start")
    return process, int(found.group(1))


def run_client(scenario: ClientScenario, name: str) -> Result:
    """One client program against a fresh echo server: its CPU per echo, and the server's share."""
    result = Result(name)
    pin = scenario.pin and (os.cpu_count() or 1) >= 2
    try:
        server, port = start_echo_server(1 if pin else None)
    except Exception as exc:
        result.error = repr(exc)
        return result
    client: subprocess.Popen[str] | None = None
    try:
        script, *extra = CLIENTS[name]
        client = subprocess.Popen(
            [sys.executable, str(HERE / "clients" / script), f"ws://127.0.0.1:{port}/", *scenario.args, *extra],
            stdout=subprocess.PIPE, text=True, preexec_fn=pinned_to(0 if pin else None),
        )
        assert client.stdout is not None
        cpu0 = cpu1 = 0.0
        for line in client.stdout:
            event = json.loads(line)
            if event.get("mark") == "start":
                cpu0 = cpu_seconds(server.pid)
            elif event.get("mark") == "end":
                cpu1 = cpu_seconds(server.pid)
            elif "result" in event:
                result.messages = int(event["messages"])
                result.elapsed = float(event["elapsed"])
                result.server_cpu = float(event["cpu"])  # the measured process: the client
                result.extra["system_cpu"] = float(event.get("system_cpu", 0.0))
                result.p50_us, result.p99_us = event.get("p50_us"), event.get("p99_us")
                result.fairness = event.get("fairness")
        if client.wait(60) != 0:
            result.error = f"client exited {client.returncode}"
        elif not result.messages:
            result.error = "no result"
        result.client_cpu = cpu1 - cpu0  # the echo server's
    except Exception as exc:  # a failing peer must not end the whole run
        result.error = repr(exc)
    finally:
        if client is not None:
            stop_process(client)
        stop_process(server)
    return result


def client_report(scenario: ClientScenario, results: dict[str, Result]) -> list[str]:
    ours = results.get(OURS)
    lines = [f"### {scenario.name}: {scenario.title}", "",
             "Client CPU: utime + stime of the client process over the window ÷ echoes received "
             "(of which kernel: the stime share); echo server CPU: its share of one core meanwhile.", "",
             "| client | msgs/s | client CPU µs/msg | of which kernel | p50 µs | p99 µs | fairness | "
             "echo server CPU | ours ÷ peer (CPU/msg) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if r.error:
            lines.append(f"| {name} | error: {r.error} |")
            continue
        ratio = "-"
        if ours and name != OURS and name not in CLIENT_VARIANTS and not ours.error:
            ratio = f"{ours.cpu_per_msg_us / r.cpu_per_msg_us:.2f}x"
        kernel = r.extra.get("system_cpu", 0.0) / r.server_cpu if r.server_cpu else 0.0
        lines.append(f"| {name} | {r.rate:,.0f} | {r.cpu_per_msg_us:.1f} | {kernel:.0%} | {fmt(r.p50_us, '.0f')} | "
                     f"{fmt(r.p99_us, '.0f')} | {fmt(r.fairness, '.2f')} | "
                     f"{r.client_cpu / r.elapsed:.0%} | {ratio} |")
    peers = [r for name, r in results.items() if name != OURS and name not in CLIENT_VARIANTS and not r.error]
    if ours and not ours.error and peers:
        best = min(peers, key=lambda r: r.cpu_per_msg_us)
        ratio = ours.cpu_per_msg_us / best.cpu_per_msg_us
        latency = f"; p50 {ours.p50_us / best.p50_us:.2f}x" if ours.p50_us and best.p50_us else ""
        lines += ["", f"- {OURS} ÷ the better peer ({best.server}), client CPU per message: {ratio:.2f}x "
                      f"(target ≤ {scenario.target:.2f}x: {'met' if ratio <= scenario.target else 'MISSED'})"
                      f"{latency}"]
    return [*lines, ""]


def run_clients(scenario: ClientScenario, names: list[str], rounds: int) -> list[str]:
    collected: dict[str, list[Result]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:  # ours and the peers alternate within each round
            result = run_client(scenario, name)
            collected[name].append(result)
            print(f"  {scenario.name} {name}: {result.rate:,.0f}/s, {result.cpu_per_msg_us:.1f} µs CPU/msg"
                  f"{', ' + result.error if result.error else ''}", file=sys.stderr, flush=True)
    return client_report(scenario, {name: median_result(results) for name, results in collected.items()})


# -- R1: cross-process fan-out over the Redis backplane ---------------------------------------

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
#: The channel of servers/ignitia.py's /broadcast room (backplane prefix "bench").
ROOM_CHANNEL = "bench:room:broadcast"
CEILING_CHANNEL = "bench:ceiling"


@dataclass
class FanOut:
    """PROCESSES servers on one Redis, RECEIVERS spread over them, one sender on the first.

    Each setup is run unpaced (deliveries/s = receivers x messages ÷ the time until the last
    receiver has the last message) and paced (one broadcast every PACE_MS: per message, the
    time from the send to the last receiver).
    """

    name: str
    processes: int = 4
    receivers: int = 1000
    messages: int = 200
    size: int = 64
    pace_ms: int = 20
    ceiling_messages: int = 100_000  # per ceiling measurement, to each of PROCESSES subscribers
    rate_target: float = 0.5  # PROCESSES ÷ 1 process, deliveries/s: at least this
    hop_target_ms: float = 2.0  # PROCESSES - 1 process, p50 to the last receiver (paced): at most this

    @property
    def title(self) -> str:
        return (f"cross-process fan-out, {self.processes} server processes x {self.receivers // self.processes} "
                f"receivers, 1 sender, {self.messages} x {self.size} B (Redis backplane)")


FANOUTS = [FanOut("R1")]


@dataclass
class Setup:
    label: str
    processes: int
    backplane: bool
    history: bool = True  # rooms keep positions and a log (the default); False: history=None


class RedisProcess:
    """A redis-server of our own on a free port (no persistence), for one R1 run."""

    def __init__(self) -> None:
        import redis  # only R1 needs redis-py

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        if not os.access(REDIS_SERVER, os.X_OK):
            raise RuntimeError(f"no {REDIS_SERVER} (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_us,
        )
        self.pid = self.process.pid
        self.client = redis.Redis.from_url(self.url, protocol=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def subscribers(self, channel: str) -> int:
        return int(dict(self.client.pubsub_numsub(channel))[channel.encode()])

    def wait_subscribers(self, channel: str, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while (found := self.subscribers(channel)) != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{found} subscribers on {channel}, not {count}, after {timeout:g} s")
            time.sleep(0.02)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def sched_seconds(pids: list[int]) -> tuple[float, float]:
    """(on a CPU, runnable but waiting for one) in seconds, over every thread of these processes.

    From /proc/PID/task/*/schedstat, in nanoseconds: R1's windows are a fraction of a
    second, too short for the 10 ms ticks of /proc/PID/stat.
    """
    run = wait = 0
    for pid in pids:
        for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
            try:
                on_cpu, waiting, _ = task.joinpath("schedstat").read_text().split()
            except (OSError, ValueError):  # a thread that just ended
                continue
            run += int(on_cpu)
            wait += int(waiting)
    return run / 1e9, wait / 1e9


def fanout_setups(fanout: FanOut) -> list[Setup]:
    """The baseline first: the same receivers and sender on one process, no backplane."""
    per = fanout.receivers // fanout.processes
    return [
        Setup(f"1 process x {fanout.receivers}, no backplane", 1, False),
        Setup(f"1 process x {fanout.receivers}, Redis backplane", 1, True),
        Setup(f"{fanout.processes} processes x {per}, Redis backplane", fanout.processes, True),
        Setup(f"{fanout.processes} processes x {per}, Redis backplane, history=None", fanout.processes, True, False),
    ]


def fanout_run(fanout: FanOut, setup: Setup, urls: list[str], pids: list[int], redis: RedisProcess | None,
               pace_ms: int) -> Result:
    """One load generator run against the setup's servers (already started)."""
    result = Result(setup.label)
    gen: subprocess.Popen[str] | None = None
    try:
        if redis is not None:  # the previous run's receivers are gone: so is every subscription
            redis.wait_subscribers(ROOM_CHANNEL, 0)
        gen = subprocess.Popen(
            ["node", str(HERE / "loadgen.mjs"), "bcast", ",".join(urls), str(fanout.receivers),
             str(fanout.messages), str(fanout.size), str(pace_ms), "1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_us,
        )
        assert gen.stdout is not None and gen.stdin is not None
        watched = {"servers": pids, "redis": [redis.pid] if redis is not None else [], "client": [gen.pid]}
        before: dict[str, tuple[float, float]] = {}
        after: dict[str, tuple[float, float]] = {}
        for line in gen.stdout:
            event = json.loads(line)
            if event.get("mark") == "ready":  # every connection open: every process must be listening
                if redis is not None:
                    redis.wait_subscribers(ROOM_CHANNEL, setup.processes)
                gen.stdin.write("go\n")
                gen.stdin.flush()
            elif event.get("mark") == "start":
                before = {name: sched_seconds(group) for name, group in watched.items()}
            elif event.get("mark") == "end":
                after = {name: sched_seconds(group) for name, group in watched.items()}
            elif "result" in event:
                result.messages = int(event["messages"])
                result.elapsed = float(event["elapsed"])
                result.client_cpu = float(event["client_cpu"])
                result.p50_us, result.p99_us = event.get("p50_us"), event.get("p99_us")
                result.extra["groups"] = event.get("groups")
                result.extra["hop"] = (event.get("hop_p50_us"), event.get("hop_p99_us"))
                if event["messages"] != event["expected"]:
                    result.error = f"delivered {event['messages']} of {event['expected']}"
        if gen.wait(120) != 0:
            result.error = f"load generator exited {gen.returncode}"
        used = {name: (after[name][0] - before[name][0], after[name][1] - before[name][1]) for name in after}
        result.server_cpu, result.extra["server_wait"] = used["servers"]
        result.extra["redis_cpu"] = used["redis"][0]
        result.extra["client_sched"] = used["client"]
    except Exception as exc:
        result.error = repr(exc)
    finally:
        if gen is not None:
            stop_process(gen)
    return result


def fanout_setup(fanout: FanOut, setup: Setup, redis: RedisProcess) -> tuple[Result, Result]:
    """Start the setup's servers, run it unpaced then paced, stop them: (unpaced, paced)."""
    servers: list[tuple[subprocess.Popen[str], int, int]] = []
    try:
        env = {"IGNITIA_BENCH_REDIS": redis.url} if setup.backplane else {}
        if not setup.history:
            env["IGNITIA_BENCH_HISTORY"] = "0"
        for _ in range(setup.processes):
            servers.append(start_server(OURS, env))
        urls = [f"ws://127.0.0.1:{port}/broadcast" for _, port, _ in servers]
        pids = [pid for _, _, pid in servers]
        via = redis if setup.backplane else None
        return (fanout_run(fanout, setup, urls, pids, via, 0),
                fanout_run(fanout, setup, urls, pids, via, fanout.pace_ms))
    except Exception as exc:
        failed = Result(setup.label, error=repr(exc))
        return failed, failed
    finally:
        for process, _, pid in servers:
            stop_server(process, pid)


def redis_ceiling(fanout: FanOut, redis: RedisProcess, reader: str) -> dict[str, Any]:
    """One publisher, PROCESSES subscriber processes on one channel (see redis_pubsub.py)."""
    script = str(HERE / "redis_pubsub.py")
    count = str(fanout.ceiling_messages)
    # A subscriber may fall behind the publisher: let Redis buffer for it rather than drop it.
    redis.client.config_set("client-output-buffer-limit", "pubsub 0 0 0")
    subscribers: list[subprocess.Popen[str]] = []
    try:
        for _ in range(fanout.processes):
            subscribers.append(subprocess.Popen(
                [sys.executable, script, "sub", redis.url, CEILING_CHANNEL, count, reader],
                stdout=subprocess.PIPE, text=True, preexec_fn=die_with_us,
            ))
        for subscriber in subscribers:
            assert subscriber.stdout is not None
            if subscriber.stdout.readline().strip() != "ready":
                raise RuntimeError("a subscriber did not start")
        redis.wait_subscribers(CEILING_CHANNEL, fanout.processes)
        cpu0 = sched_seconds([redis.pid])[0]
        published = subprocess.run(
            [sys.executable, script, "pub", redis.url, CEILING_CHANNEL, count, str(fanout.size)],
            stdout=subprocess.PIPE, text=True, check=True, timeout=300, preexec_fn=die_with_us,
        )
        received = []
        for subscriber in subscribers:
            assert subscriber.stdout is not None
            received.append(json.loads(subscriber.stdout.readline()))
        cpu1 = sched_seconds([redis.pid])[0]
    except Exception as exc:
        return {"reader": reader, "error": repr(exc)}
    finally:
        for subscriber in subscribers:
            stop_process(subscriber)
    pub = json.loads(published.stdout)
    rates = [got["count"] / (got["last"] - pub["start"]) if got["count"] else 0.0 for got in received]
    delivered = sum(got["count"] for got in received)
    return {
        "reader": reader, "rates": rates, "total": sum(rates),
        "publish_rate": pub["count"] / (pub["end"] - pub["start"]),
        "lost": fanout.ceiling_messages * fanout.processes - delivered,
        "redis_cpu_us": (cpu1 - cpu0) / delivered * 1e6 if delivered else None,
    }


def run_fanout(fanout: FanOut, rounds: int) -> list[str]:
    """Every setup and both ceilings, ROUNDS times (alternating), on one redis-server."""
    setups = fanout_setups(fanout)
    unpaced: dict[str, list[Result]] = {setup.label: [] for setup in setups}
    paced: dict[str, list[Result]] = {setup.label: [] for setup in setups}
    ceilings: dict[str, list[dict[str, Any]]] = {"redis-py": [], "raw": []}
    try:
        redis = RedisProcess()
    except Exception as exc:
        return [f"### {fanout.name}: {fanout.title}", "", f"error: {exc!r}", ""]
    try:
        for _ in range(rounds):
            for setup in setups:
                a, b = fanout_setup(fanout, setup, redis)
                unpaced[setup.label].append(a)
                paced[setup.label].append(b)
                print(f"  {fanout.name} {setup.label}: {a.rate:,.0f} deliveries/s, paced p50 "
                      f"{fmt((b.p50_us or 0) / 1e3, '.2f')} ms{', ' + (a.error or b.error or '') if a.error or b.error else ''}",
                      file=sys.stderr, flush=True)
            for reader in ceilings:
                ceiling = redis_ceiling(fanout, redis, reader)
                ceilings[reader].append(ceiling)
                print(f"  {fanout.name} Redis ceiling ({reader} subscribers): "
                      f"{ceiling.get('error') or format(ceiling['total'], ',.0f') + ' msgs/s in all'}",
                      file=sys.stderr, flush=True)
    finally:
        redis.stop()
    return fanout_report(
        fanout, setups,
        {label: median_by(results, lambda r: -r.rate) for label, results in unpaced.items()},
        {label: median_by(results, lambda r: r.p50_us or float("inf")) for label, results in paced.items()},
        {reader: median_ceiling(results) for reader, results in ceilings.items()},
    )


def median_by(results: list[Result], key: Any) -> Result:
    good = [r for r in results if not r.error] or results
    return sorted(good, key=key)[len(good) // 2]


def median_ceiling(results: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in results if "error" not in r] or results
    return sorted(good, key=lambda r: r.get("total", 0))[len(good) // 2]


def fanout_report(fanout: FanOut, setups: list[Setup], unpaced: dict[str, Result], paced: dict[str, Result],
                  ceilings: dict[str, dict[str, Any]]) -> list[str]:
    base = unpaced[setups[0].label]
    base_paced = paced[setups[0].label]
    lines = [f"### {fanout.name}: {fanout.title}", "",
             f"Unpaced: {fanout.messages} broadcasts sent at once; paced: one every {fanout.pace_ms} ms. "
             "CPU per delivery is over the unpaced run (from the scheduler, ns); server CPU is summed over the "
             "server processes.", "",
             "| setup | deliveries/s | time to last receiver (unpaced) | p50 / p99 to last receiver (paced) | "
             "server CPU µs/delivery | redis-server CPU µs/delivery | client CPU | ÷ 1 process (deliveries/s) |",
             "|---|---|---|---|---|---|---|---|"]
    for setup in setups:
        a, b = unpaced[setup.label], paced[setup.label]
        if a.error or b.error:
            lines.append(f"| {setup.label} | error: {a.error or b.error} |")
            continue
        ratio = f"{a.rate / base.rate:.2f}x" if setup is not setups[0] and not base.error and base.rate else "-"
        redis_cpu = f"{a.extra['redis_cpu'] / a.messages * 1e6:.2f}" if setup.backplane else "-"
        lines.append(
            f"| {setup.label} | {a.rate:,.0f} | {a.elapsed * 1e3:.0f} ms | "
            f"{fmt((b.p50_us or 0) / 1e3, '.2f')} / {fmt((b.p99_us or 0) / 1e3, '.2f')} ms | "
            f"{a.cpu_per_msg_us:.2f} | {redis_cpu} | {a.client_cpu / a.elapsed:.0%} | {ratio} |")
    contention = []
    for setup in setups:
        b = paced[setup.label]
        if not b.error and b.messages:
            broadcasts = fanout.messages
            run, wait = b.client_cpu / broadcasts * 1e3, b.extra["client_sched"][1] / broadcasts * 1e3
            contention.append(f"- {setup.label}: servers {b.server_cpu / broadcasts * 1e3:.2f} ms on a CPU, "
                              f"{b.extra['server_wait'] / broadcasts * 1e3:.2f} ms waiting for one; load generator "
                              f"{run:.2f} ms on a CPU, {wait:.2f} ms waiting")
    if contention:
        lines += ["", f"Paced, per broadcast, from the scheduler ({os.cpu_count()} cores; runnable but waiting for a "
                      "CPU: the processes compete for the cores; servers summed over their processes):",
                  *contention]
    spread, spread_paced = unpaced[setups[2].label], paced[setups[2].label]
    plain = unpaced[setups[3].label]
    if not spread.error and not plain.error and plain.cpu_per_msg_us:
        lines += ["", f"The cost of positions and the room's log (Redis gives each message its position, keeps it, "
                      f"and every process orders what it hears): {setups[2].label} ÷ {setups[3].label}, server CPU "
                      f"per delivery {spread.cpu_per_msg_us / plain.cpu_per_msg_us:.2f}x, redis-server CPU per delivery "
                      f"{spread.extra['redis_cpu'] / max(plain.extra['redis_cpu'], 1e-9):.2f}x, deliveries/s "
                      f"{spread.rate / plain.rate:.2f}x."]
    groups = spread_paced.extra.get("groups") if not spread_paced.error else None
    if groups:
        def first_last(group: dict[str, float]) -> str:
            return f"{group['first_p50_us'] / 1e3:.2f} / {group['p50_us'] / 1e3:.2f}"

        lines += ["", f"{setups[2].label}, paced, p50 from the send to the first / last receiver: on the "
                      f"sender's process {first_last(groups[0])} ms; on the others (through Redis) "
                      + ", ".join(first_last(g) for g in groups[1:]) + " ms. From the last receiver on the "
                      "sender's process to the first on another, per message: p50 "
                      f"{fmt(spread_paced.extra['hop'][0] / 1e3, '.2f')}, p99 "
                      f"{fmt(spread_paced.extra['hop'][1] / 1e3, '.2f')} ms (the sender's process delivers to "
                      "its own receivers before it publishes)."]
    lines += ["", f"Redis's own pub/sub rate on this machine (the ceiling): one redis-py publisher sends "
                  f"{fanout.ceiling_messages:,} PUBLISHes of {fanout.size} B to one channel, pipelined 256 at a "
                  f"time (as the backplane does), to {fanout.processes} subscriber processes; a subscriber's rate "
                  "is messages ÷ (its last arrival - the first publish)."]
    for reader, what in (("redis-py", "redis-py subscribers, get_message() per message as the backplane reads"),
                         ("raw", "raw-socket subscribers, frames counted, not parsed: Redis's own limit")):
        c = ceilings[reader]
        if "error" in c:
            lines.append(f"- {what}: error: {c['error']}")
            continue
        lost = f"; {c['lost']:,} lost" if c["lost"] else ""
        lines.append(f"- {what}: {min(c['rates']):,.0f}-{max(c['rates']):,.0f} msgs/s per subscriber, "
                     f"{c['total']:,.0f} msgs/s in all (publisher {c['publish_rate']:,.0f}/s; redis-server "
                     f"{fmt(c['redis_cpu_us'], '.2f')} µs CPU per message delivered{lost})")
    if not spread.error and spread.elapsed and setups[2].processes > 1:
        lines.append(f"- through the backplane in {fanout.name} (unpaced): each process got {fanout.messages} "
                     f"broadcasts in {spread.elapsed * 1e3:.0f} ms, {fanout.messages / spread.elapsed:,.0f} msgs/s "
                     f"per process, each fanned out to {fanout.receivers // fanout.processes} WebSockets")
    targets = []
    if not spread.error and not base.error and base.rate:
        ratio = spread.rate / base.rate
        targets.append(f"- {setups[2].label} ÷ {setups[0].label}, deliveries/s: {ratio:.2f}x "
                       f"(target ≥ {fanout.rate_target:.2f}x: {'met' if ratio >= fanout.rate_target else 'MISSED'})")
    if not spread_paced.error and not base_paced.error and spread_paced.p50_us and base_paced.p50_us:
        hop = (spread_paced.p50_us - base_paced.p50_us) / 1e3
        targets.append(f"- what the Redis hop adds, p50 to the last receiver (paced), {setups[2].label} - "
                       f"{setups[0].label}: {spread_paced.p50_us / 1e3:.2f} - {base_paced.p50_us / 1e3:.2f} ms "
                       f"= {hop:+.2f} ms "
                       f"(target ≤ {fanout.hop_target_ms:g} ms: {'met' if hop <= fanout.hop_target_ms else 'MISSED'})")
    if targets:
        lines += ["", *targets]
    return [*lines, ""]


def median_result(results: list[Result]) -> Result:
    good = [r for r in results if not r.error] or results
    return sorted(good, key=lambda r: r.cpu_per_msg_us)[len(good) // 2]


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def report(scenario: Scenario, results: dict[str, Result]) -> list[str]:
    ours = results.get(OURS)
    lines = [f"### {scenario.name}: {scenario.title}", ""]
    if scenario.mode == "idle":
        lines += ["| server | handshakes/s | CPU µs/handshake | RSS KiB/conn | alive | client CPU | vs ours (RSS, handshakes/s) |",
                  "|---|---|---|---|---|---|---|"]
    else:
        lines += ["| server | msgs/s | CPU µs/msg | p50 µs | p99 µs | fairness | client CPU | ours ÷ peer (CPU/msg) |",
                  "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if r.error:
            lines.append(f"| {name} | error: {r.error} |")
            continue
        client_share = f"{r.client_cpu / r.elapsed:.0%}" if r.elapsed else "-"
        if scenario.mode == "idle":
            ratio = "-"
            if ours and name != OURS and not ours.error and r.rss_per_conn_kib and r.rate:
                ratio = f"{(ours.rss_per_conn_kib or 0) / r.rss_per_conn_kib:.2f}x RSS, {ours.rate / r.rate:.2f}x rate"
            lines.append(f"| {name} | {r.rate:,.0f} | {r.cpu_per_msg_us:.0f} | {fmt(r.rss_per_conn_kib)} | "
                         f"{r.alive}/{r.messages} | {client_share} | {ratio} |")
        else:
            ratio = "-"
            if ours and name != OURS and name not in VARIANTS and not ours.error:
                ratio = f"{ours.cpu_per_msg_us / r.cpu_per_msg_us:.2f}x"
            lines.append(f"| {name} | {r.rate:,.0f} | {r.cpu_per_msg_us:.1f} | {fmt(r.p50_us, '.0f')} | "
                         f"{fmt(r.p99_us, '.0f')} | {fmt(r.fairness, '.2f')} | {client_share} | {ratio} |")
    peers = [r for name, r in results.items() if name != OURS and name not in VARIANTS and not r.error]
    for name in ENVIRONMENTS:
        variant = results.get(name)
        if variant is not None and not variant.error and peers:
            best = min(peers, key=lambda r: r.cpu_per_msg_us)
            lines += ["", f"{name} ÷ best peer ({best.server}), CPU per message: "
                          f"{variant.cpu_per_msg_us / best.cpu_per_msg_us:.2f}x"]
    compared = []
    for name, baseline, target in COMPARISONS:
        a, b = results.get(name), results.get(baseline)
        if a is not None and b is not None and not a.error and not b.error:
            ratio = a.cpu_per_msg_us / b.cpu_per_msg_us
            latency = f"; p50 {a.p50_us / b.p50_us:.2f}x" if a.p50_us and b.p50_us else ""
            verdict = "" if target is None else f" (target ≤ {target:.2f}x: {'met' if ratio <= target else 'MISSED'})"
            scraped = f"; /metrics scraped {a.extra['scrapes']} times in the window" if "scrapes" in a.extra else ""
            unit = "handshake" if scenario.mode == "idle" else "message"
            compared.append(f"- {name} ÷ {baseline}, CPU per {unit}: {ratio:.2f}x{verdict}{latency}{scraped}")
    if compared:
        lines += ["", *compared]
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[s.name for s in [*SCENARIOS, *FANOUTS, *CLIENT_SCENARIOS]])
    parser.add_argument("--servers", nargs="*", default=list(SERVERS))
    parser.add_argument("--clients", nargs="*", default=list(CLIENTS), help="C1's contestants")
    parser.add_argument("--rounds", type=int, default=1, help="runs per server; the median is shown")
    parser.add_argument("--output", type=pathlib.Path, help="also write the markdown tables here")
    parser.add_argument("--fanout-size", nargs=4, type=int, metavar=("PROCESSES", "RECEIVERS", "MESSAGES", "CEILING"),
                        help="R1's size (default 4 1000 200 100000); small ones for trying it out")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so that every finally block stops what it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not all((HERE / "node_modules" / package).is_dir() for package in ("ws", "bufferutil")):
        subprocess.run([shutil.which("npm") or "npm", "install", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    servers = [OURS] + [name for name in args.servers if name != OURS] if OURS in args.servers else args.servers
    output = [f"Benchmarks on {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
              f"{time.strftime('%Y-%m-%d')}; server CPU per message is the main figure.", ""]
    for scenario in [s for s in SCENARIOS if s.name in args.only]:
        names = [*servers[:1], *scenario.also, *servers[1:]] if servers[:1] == [OURS] else servers
        names = [name for name in names if scenario.mode == "echo" or name not in ECHO_ONLY]
        if not names:
            continue
        collected: dict[str, list[Result]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:  # ours and the peers alternate within each round
                result = run_one(scenario, name)
                collected[name].append(result)
                print(f"  {scenario.name} {name}: {result.rate:,.0f}/s, {result.cpu_per_msg_us:.1f} µs CPU/msg"
                      f"{', ' + result.error if result.error else ''}", file=sys.stderr, flush=True)
        table = report(scenario, {name: median_result(results) for name, results in collected.items()})
        print("\n".join(table), flush=True)
        output += table
    for fanout in [f for f in FANOUTS if f.name in args.only and OURS in servers]:
        if args.fanout_size:
            processes, receivers, messages, ceiling = args.fanout_size
            fanout = dataclasses.replace(fanout, processes=processes, receivers=receivers, messages=messages,
                                         ceiling_messages=ceiling)
        table = run_fanout(fanout, args.rounds)
        print("\n".join(table), flush=True)
        output += table
    clients = [OURS] + [name for name in args.clients if name != OURS] if OURS in args.clients else args.clients
    for client_scenario in [s for s in CLIENT_SCENARIOS if s.name in args.only]:
        table = run_clients(client_scenario, [name for name in clients if name in CLIENTS], args.rounds)
        print("\n".join(table), flush=True)
        output += table
    if args.output:
        args.output.write_text("\n".join(output) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
