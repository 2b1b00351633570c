"""The benchmark suite: ignitia_sync against its peers, side by side in one run.

Each server runs in its own process; the load comes from ``loadgen.mjs`` (Node + ws), whose
own CPU time is printed so you can see it is not the bottleneck. The main figure is the
server's CPU time per message (utime + stime over the measured window ÷ messages), which
stays meaningful on a shared machine; ratios compare ignitia_sync with each peer.

    tox -e bench                                  # everything
    python tests/benchmarks/run.py --only E2 E3   # some scenarios
    python tests/benchmarks/run.py --servers ignitia_sync websockets-asyncio --rounds 3
    python tests/benchmarks/run.py --only E1 E2 E3 --servers ignitia_sync ignitia_sync-gunicorn flask-sock-gunicorn

A server whose ``ws://`` line names a ``worker pid`` (gunicorn) is measured there (CPU
time and RSS): the worker does the work, not the process run.py started.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
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
}
OURS = "ignitia_sync"
#: ignitia_sync without websockets' C unmasking (the pure-Python fallback), run where
#: masking is a real share of the work: bulk messages.
PURE = "ignitia_sync-pure-python"
ENVIRONMENTS = {PURE: {"IGNITIA_SYNC_PURE_PYTHON": "1"}}
#: ignitia_sync's flask-sock-compatible Sock in a Flask app under gunicorn's gevent worker.
GUNICORN = "ignitia_sync-gunicorn"
#: Variants of ours: not peers, so no "ours ÷ peer" ratio for them.
VARIANTS = {*ENVIRONMENTS, GUNICORN}
#: Servers with an /echo route only (a Flask app each, under gunicorn's default 1,000
#: worker connections): they run in the echo scenarios only.
ECHO_ONLY = {GUNICORN, "flask-sock-gunicorn"}
#: (variant, baseline, target): variant ÷ baseline on CPU per message, printed under each
#: table where both ran. Ours under gunicorn against flask-sock's documented gevent
#: deployment, and against our own standalone server.
COMPARISONS = [(GUNICORN, "flask-sock-gunicorn", 0.5), (GUNICORN, OURS, 1.15)]


@dataclass
class Scenario:
    name: str
    title: str
    mode: str
    args: list[str]
    path: str
    also: tuple[str, ...] = ()  # extra variants of ours, for this scenario only


SCENARIOS = [
    Scenario("E1", "1 conn, 1 in flight, 32 B text (latency)", "echo", ["1", "1", "32", "0", "0.5", "3"], "/echo"),
    Scenario("E2", "50 conns x 8 in flight, 32 B text", "echo", ["50", "8", "32", "0", "0.5", "3"], "/echo"),
    Scenario("E3", "10 conns x 4 in flight, 16 KiB binary", "echo", ["10", "4", "16384", "1", "0.5", "3"], "/echo",
             also=(PURE,)),
    Scenario("B1", "1 sender, 500 receivers, 200 x 64 B broadcasts", "bcast", ["500", "200", "64", "0"], "/broadcast"),
    # Paced so that neither the server nor the client is saturated (25,000 deliveries/s):
    # the time until the last receiver has a broadcast, not a queue, is measured.
    Scenario("B1p", "B1 paced: one broadcast every 20 ms (fan-out latency)", "bcast", ["500", "200", "64", "20"],
             "/broadcast"),
    Scenario("B2", "1 sender, 1,000 receivers, 100 x 64 B broadcasts", "bcast", ["1000", "100", "64", "0"], "/broadcast"),
    Scenario("I1", "5,000 idle connections", "idle", ["5000", "100"], "/echo"),
]


@dataclass
class Result:
    server: str
    messages: int = 0
    elapsed: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
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


def start_server(name: str) -> tuple[subprocess.Popen[str], int, int]:
    """The server's process, its port, and the pid to measure (a gunicorn server's worker)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "servers" / SERVERS.get(name, SERVERS[OURS])), "--port", str(port)],
        env={**os.environ, **ENVIRONMENTS.get(name, {})},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=die_with_us,
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


def run_one(scenario: Scenario, name: str) -> Result:
    server, port, pid = start_server(name)
    result = Result(name)
    gen: subprocess.Popen[str] | None = None
    try:
        url = f"ws://127.0.0.1:{port}{scenario.path}"
        gen = subprocess.Popen(
            ["node", str(HERE / "loadgen.mjs"), scenario.mode, url, *scenario.args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_us,
        )
        assert gen.stdout is not None and gen.stdin is not None
        cpu0 = cpu1 = 0.0
        rss0 = rss_kib(pid)
        for line in gen.stdout:
            event = json.loads(line)
            if event.get("mark") == "start":
                cpu0 = cpu_seconds(pid)
            elif event.get("mark") == "end":
                cpu1 = cpu_seconds(pid)
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
            compared.append(f"- {name} ÷ {baseline}, CPU per message: {ratio:.2f}x "
                            f"(target ≤ {target:.2f}x: {'met' if ratio <= target else 'MISSED'}){latency}")
    if compared:
        lines += ["", *compared]
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[s.name for s in SCENARIOS])
    parser.add_argument("--servers", nargs="*", default=list(SERVERS))
    parser.add_argument("--rounds", type=int, default=1, help="runs per server; the median is shown")
    parser.add_argument("--output", type=pathlib.Path, help="also write the markdown tables here")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so that every finally block stops what it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not (HERE / "node_modules" / "ws").is_dir():
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
    if args.output:
        args.output.write_text("\n".join(output) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
