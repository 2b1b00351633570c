"""What every C1 client program shares: the arguments, the per-connection loop, the report.

A client program opens CONNS connections to the echo server, keeps INFLIGHT messages in
flight on each (it sends INFLIGHT, then one more for each echo), lets WARMUP_S pass, and
measures WINDOW_S seconds: echoes received, and its own CPU time over the window
(``getrusage(RUSAGE_SELF)``: utime + stime of every thread, and stime, the kernel's share,
apart). It prints JSON lines: ``{"mark": "start"}``, ``{"mark": "end"}`` (run.py samples
the echo server's CPU time at those) and the result, then exits without closing the
connections.

    python CLIENT.py URL CONNS INFLIGHT SIZE BINARY WARMUP_S WINDOW_S

Latency is sampled on every 16th message of each connection (the echoes come back in
order, so the k-th echo answers the k-th send): one clock read per 16 messages.
"""

from __future__ import annotations

import collections
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SAMPLE = 15  # latency of the messages whose number & SAMPLE == 0


@dataclass
class Options:
    url: str
    conns: int
    inflight: int
    size: int
    binary: bool
    warmup: float
    window: float

    @property
    def payload(self) -> str | bytes:
        return b"\x07" * self.size if self.binary else "x" * self.size


def options() -> Options:
    url, conns, inflight, size, binary, warmup, window = sys.argv[1:8]
    return Options(url, int(conns), int(inflight), int(size), binary == "1", float(warmup), float(window))


@dataclass
class Stats:
    """One connection's counts, written by the connection's own thread or greenlet only."""

    received: int = 0
    latencies: list[float] = field(default_factory=list)
    measuring: bool = False
    stop: bool = False


def pump(send: Callable[[Any], Any], recv: Callable[[], Any], payload: str | bytes, inflight: int,
         stats: Stats) -> None:
    """Keep ``inflight`` messages in flight until ``stats.stop``."""
    clock = time.perf_counter
    stamps: collections.deque[float] = collections.deque()
    sent = 0
    for _ in range(inflight):
        if not sent & SAMPLE:
            stamps.append(clock())
        send(payload)
        sent += 1
    received = 0
    while not stats.stop:
        recv()
        if not received & SAMPLE:
            latency = clock() - stamps.popleft()
            if stats.measuring:
                stats.latencies.append(latency)
        received += 1
        stats.received = received
        if not sent & SAMPLE:
            stamps.append(clock())
        send(payload)
        sent += 1


def cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def measure(opts: Options, stats: list[Stats], sleep: Callable[[float], Any], **extra: Any) -> None:
    """Run in the main thread (or greenlet) once every connection is pumping: warm-up, window, report."""
    sleep(opts.warmup)
    for s in stats:
        s.measuring = True
    counts0 = [s.received for s in stats]
    cpu0, t0 = cpu(), time.perf_counter()
    out({"mark": "start"})
    sleep(opts.window)
    counts1 = [s.received for s in stats]
    cpu1, t1 = cpu(), time.perf_counter()
    out({"mark": "end"})
    for s in stats:
        s.measuring = False
        s.stop = True
    per_conn = [b - a for a, b in zip(counts0, counts1, strict=True)]
    total = sum(per_conn)
    latencies = sorted(x for s in stats for x in s.latencies)

    def percentile(p: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e6 if latencies else None

    mean = total / len(stats) if stats else 0
    out({
        "result": "client", "messages": total, "elapsed": t1 - t0,
        "cpu": sum(cpu1) - sum(cpu0), "system_cpu": cpu1[1] - cpu0[1],
        "p50_us": percentile(0.5), "p99_us": percentile(0.99),
        "fairness": min(per_conn) / mean if mean else 0.0, **extra,
    })
    os._exit(0)  # no closing handshakes: the run is over, and they are not what is measured


def measure_threads(opts: Options, stats: list[Stats], open_one: Callable[[], Any],
                    pump_one: Callable[[Any, Stats], Any], **extra: Any) -> None:
    """One thread per connection: each opens (``open_one()``), all start pumping together, then :func:`measure`."""
    opened = threading.Semaphore(0)
    go = threading.Event()

    def client(s: Stats) -> None:
        ws = open_one()
        opened.release()
        go.wait()
        pump_one(ws, s)

    for s in stats:
        threading.Thread(target=client, args=(s,), daemon=True).start()
    for _ in stats:
        if not opened.acquire(timeout=30):
            raise SystemExit("a connection did not open within 30 s")
    go.set()
    measure(opts, stats, time.sleep, threads=len(stats), **extra)
