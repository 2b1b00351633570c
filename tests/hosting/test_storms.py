"""Connection storms against a server in its own process: a burst of real clients is served, not refused.

A reconnect storm (a deploy behind nginx, where every client has the proxy's address) is
thousands of fast handshakes from one address; slowloris is sockets held open and silent.
The pending-handshake caps must tell them apart: at ``max_pending_handshakes`` the server
stops accepting (the kernel's backlog queues the rest) instead of answering 503, and per
address only handshakes silent for longer than ``handshake_grace`` count; the oldest of
those is dropped when a new client needs the place.

The clients are gevent greenlets in this process; the server is
``tests/scripts/storm_server.py`` in its own. The tests assert outcomes (every client got
its 101, none a 503) and print, without asserting, the time for all to connect and the
server's peak RSS.
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import sys
import time

import gevent
import gevent.socket
import pytest

from tests.subprocess_server import ROOT, free_port, running
from tests.wire import handshake_bytes

#: Clients in each storm (5,000 shows the behaviour; lower it for a quick run).
STORM_CLIENTS = int(os.environ.get("IGNITIA_STORM_CLIENTS", "5000"))
#: Silent sockets (nothing, or half a request head) held open during a storm.
SILENT_SOCKETS = 1000
#: The loopback source addresses of the many-address storm: 127.0.0.2 ... 127.0.0.17.
SIXTEEN = [f"127.0.0.{n}" for n in range(2, 18)]
#: The clients of a storm start evenly over this many seconds (5,000 per second by default).
STORM_SECONDS = 1.0
#: Seconds the clients of one storm may take, all together (a bound on the test, not a timing check).
STORM_BOUND = 40.0

SERVER = [sys.executable, os.path.join(ROOT, "tests", "scripts", "storm_server.py")]
# Silent sockets are never timed out during a test: only the caps' design keeps the server open.
SETTINGS = ["handshake_timeout=60"]

pytestmark = pytest.mark.timeout(120)


def _socket(source: str) -> gevent.socket.socket:
    sock = gevent.socket.socket()
    # Closed with a reset: thousands of client sockets leave no TIME_WAIT behind.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if source != "127.0.0.1":
        sock.bind((source, 0))
    return sock


def upgrade(port: int, source: str, held: list[gevent.socket.socket]) -> int | str:
    """Connect from ``source``, ask for ``/ws``; the status of the answer, or what went wrong."""
    sock = _socket(source)
    held.append(sock)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(handshake_bytes("/ws"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return "closed"
            head += chunk
        return int(head.split(b" ", 2)[1])
    except OSError as exc:
        return type(exc).__name__


def storm(port: int, sources: list[str], count: int) -> tuple[collections.Counter[int | str], float, list]:
    """``count`` clients over ``STORM_SECONDS``, round-robin over ``sources``: (outcomes, seconds for all, sockets)."""
    held: list[gevent.socket.socket] = []
    started = time.monotonic()
    clients = []
    for n in range(count):
        due = started + STORM_SECONDS * n / count
        if due - time.monotonic() > 0.002:
            gevent.sleep(due - time.monotonic())
        clients.append(gevent.spawn(upgrade, port, sources[n % len(sources)], held))
    gevent.joinall(clients, timeout=STORM_BOUND)
    elapsed = time.monotonic() - started
    outcomes: collections.Counter[int | str] = collections.Counter(
        client.value if client.successful() else "unfinished" for client in clients
    )
    for client in clients:
        client.kill(block=False)
    return outcomes, elapsed, held


def silent(port: int, sources: list[str], count: int) -> list[gevent.socket.socket]:
    """Open ``count`` connections that send half a request head (every other one) or nothing, and wait."""
    socks = []
    for n in range(count):
        sock = _socket(sources[n % len(sources)])
        sock.connect(("127.0.0.1", port))
        if n % 2:
            sock.sendall(handshake_bytes("/ws")[:40])
        socks.append(sock)
    return socks


def closed_by_server(socks: list[gevent.socket.socket]) -> int:
    """How many of ``socks`` the server has closed (EOF, a reset, or a 503 waiting to be read)."""
    count = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            sock.recv(1, socket.MSG_PEEK)
            count += 1
        except BlockingIOError:
            pass
        except OSError:
            count += 1
    return count


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def close_all(*groups: list[gevent.socket.socket]) -> None:
    for group in groups:
        for sock in group:
            sock.close()


def run_storm(label: str, storm_sources: list[str], silent_sources: list[str]) -> None:
    port = free_port()
    output: list[str] = []
    with running([*SERVER, str(port), *SETTINGS], port, output=output) as server:
        loris = silent(port, silent_sources, SILENT_SOCKETS)
        gevent.sleep(1.5)  # long enough to count as silent (handshake_grace, 1 s by default)
        outcomes, elapsed, held = storm(port, storm_sources, STORM_CLIENTS)
        dropped = closed_by_server(loris)
        rss = peak_rss_mib(server.pid)
        try:
            print(
                f"\n{label}: {STORM_CLIENTS} clients started over {STORM_SECONDS:.1f}s from {len(storm_sources)} "
                f"address(es) beside {SILENT_SOCKETS} "
                f"silent sockets from {len(silent_sources)}: outcomes {dict(outcomes)}, all done in {elapsed:.2f}s "
                f"({STORM_CLIENTS / elapsed:.0f}/s); the server closed {dropped} silent sockets; "
                f"server peak RSS {rss:.0f} MiB"
            )
            assert outcomes == {101: STORM_CLIENTS}, outcomes
            with gevent.Timeout(10):  # and one more, from the silent sockets' address
                assert upgrade(port, silent_sources[0], held) == 101
        finally:
            close_all(held, loris)
    counters = [line for line in output[0].splitlines() if line.startswith("stats ")]
    print(f"{label}: server counters {counters}")  # its 503s went to half-sent heads it dropped


def test_a_storm_from_one_address_all_connect_beside_a_slowloris_from_it():
    """What a reverse proxy looks like: every client, and the attacker, from 127.0.0.1."""
    run_storm("one address", ["127.0.0.1"], ["127.0.0.1"])


def test_a_storm_from_sixteen_addresses_all_connect_beside_silent_sockets_from_them():
    """The silent sockets are spread (about 63 per address, below the per-address cap) over the same 16."""
    run_storm("16 addresses", SIXTEEN, SIXTEEN)


def test_a_slowloris_from_one_address_cannot_keep_a_fresh_client_from_it_out():
    """Twice as many silent sockets as ``max_pending_handshakes``: the listener stops, then drops the oldest."""
    port = free_port()
    with running([*SERVER, str(port), *SETTINGS], port) as server:
        loris = silent(port, ["127.0.0.1"], 2 * SILENT_SOCKETS)
        held: list[gevent.socket.socket] = []
        try:
            started = time.monotonic()
            with gevent.Timeout(20):
                assert upgrade(port, "127.0.0.1", held) == 101
            print(f"\nfresh client served {time.monotonic() - started:.2f}s after {len(loris)} silent sockets; "
                  f"{closed_by_server(loris)} of them closed; server peak RSS {peak_rss_mib(server.pid):.0f} MiB")
        finally:
            close_all(held, loris)
