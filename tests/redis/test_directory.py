"""The id directory across processes: ids claimed cluster-wide, taken over only when asked, expired with their process.

Each process is ``tests/redis/backplane_process.py`` (a RedisBackplane in a process of its
own, driven on stdin); Redis is a real redis-server; a crash is SIGKILL.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ignitia_sync.redis import Emitter
from tests.subprocess_server import ROOT
from tests.waiting import wait_for

wait_until = functools.partial(wait_for, timeout=15.0)  # processes of their own: a longer wait


class BackplaneProcess:
    """One ``backplane_process`` subprocess: commands in, answers and direct messages out."""

    def __init__(self, url: str, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.redis.backplane_process", url, *options], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": ROOT},
        )
        self.answers: queue.Queue[str] = queue.Queue()
        self.direct: list[str] = []
        self.lines: list[str] = []

        def drain() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line)
                if line.startswith("direct "):
                    self.direct.append(line[len("direct "):].rstrip("\n"))
                else:
                    self.answers.put(line.rstrip("\n"))

        threading.Thread(target=drain, daemon=True).start()
        ready = self._answer()
        assert ready.startswith("ready "), ready
        self.uid = ready.split()[1]

    def _answer(self) -> str:
        try:
            return self.answers.get(timeout=20)
        except queue.Empty:
            raise AssertionError("no answer:\n" + "".join(self.lines)) from None

    def ask(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self._answer()

    def claim(self, id: str, take_over: bool = False) -> str:
        answer = self.ask(f"{'take' if take_over else 'claim'} {id}")
        assert answer.startswith(f"claim {id} "), answer
        return answer.split()[-1]

    def stats(self) -> dict[str, Any]:
        answer = self.ask("stats")
        return dict(json.loads(answer[len("stats "):]))

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(20)
        assert "Traceback" not in "".join(self.lines), "".join(self.lines)


@contextlib.contextmanager
def processes(url: str, count: int, *options: str) -> Iterator[list[BackplaneProcess]]:
    started: list[BackplaneProcess] = []
    try:
        for _ in range(count):
            started.append(BackplaneProcess(url, *options))
        yield started
    finally:
        for process in started:
            with contextlib.suppress(Exception):
                process.stop()
            if process.process.poll() is None:
                process.process.kill()


def pointing_at(client: Any, uid: str) -> list[str]:
    """Every directory entry in Redis (string key or hash field) whose value is ``uid``."""
    found = []
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"string" and client.get(key) == uid.encode():
            found.append(key.decode())
        elif kind == b"hash":
            found += [f"{key.decode()}[{field.decode()}]" for field, value in client.hgetall(key).items()
                      if value == uid.encode()]
    return found


def test_an_id_is_claimed_cluster_wide_and_taken_over_only_when_asked(redis_server):
    """Issue item 7: a second process's identify("alice") silently took her direct messages, and its leaving
    deleted the directory entry: the first alice became unreachable."""
    emitter = Emitter(redis_server.url)
    client = redis_server.client()
    with processes(redis_server.url, 2, "--id-ttl", "3") as (first, second):
        assert first.claim("alice") == "True"
        assert first.ask("identified alice") == "ok"
        assert second.claim("alice") == "False"  # a live process has her: the registry raises
        assert emitter.send_to("alice", "one")
        wait_until(lambda: first.direct == ["alice one"], "the first alice to get it")
        # A registry that does not claim (identified only) cannot take her either...
        assert second.ask("identified alice") == "ok"
        wait_until(lambda: second.stats()["ids_lost"] == 1, "the conflict counted")
        assert emitter.send_to("alice", "two")
        wait_until(lambda: first.direct == ["alice one", "alice two"], "the first alice to get it still")
        # ...and its leaving does not take her out of the directory.
        assert second.ask("forgotten alice") == "ok"
        assert second.ask("stats")  # the forget has been handed over before this answer
        assert emitter.send_to("alice", "three")
        wait_until(lambda: first.direct[-1:] == ["alice three"], "the first alice, after the second left")
        # Taking over is explicit.
        assert second.claim("alice", take_over=True) == "True"
        assert second.ask("identified alice") == "ok"
        assert emitter.send_to("alice", "four")
        wait_until(lambda: second.direct == ["alice four"], "the new alice")
        wait_until(lambda: first.stats()["ids_lost"] == 1, "the first process to notice (its next refresh)")
        # When the new one leaves, the old one (still connected) gets her back on its next refresh.
        assert second.ask("forgotten alice") == "ok"
        wait_until(lambda: client.get("{ignitia}:id:alice") == first.uid.encode(), "alice back in the directory")
        assert emitter.send_to("alice", "five")
        wait_until(lambda: first.direct[-1:] == ["alice five"], "the first alice again")
        assert second.direct == ["alice four"]
    emitter.close()


def test_a_killed_process_ids_leave_the_directory_within_the_ttl(redis_server):
    """Issue item 7: a SIGKILLed process's ids stayed in the directory for good; now they expire."""
    client = redis_server.client()
    emitter = Emitter(redis_server.url)
    with processes(redis_server.url, 2, "--id-ttl", "2") as (doomed, survivor):
        assert survivor.claim("carol") == "True" and survivor.ask("identified carol") == "ok"
        assert doomed.claim("bob") == "True" and doomed.ask("identified bob") == "ok"
        assert survivor.claim("bob") == "False"  # bob's process is alive
        wait_until(lambda: pointing_at(client, doomed.uid), "bob in the directory")
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(10)
        wait_until(lambda: not pointing_at(client, doomed.uid), "the dead process's entries to expire")
        assert survivor.claim("bob") == "True"  # free again
        assert survivor.ask("identified bob") == "ok"
        time.sleep(3)  # more than a TTL: the live process's entries are refreshed, not expired
        assert emitter.send_to("carol", "still here") and emitter.send_to("bob", "yours now")
        wait_until(lambda: survivor.direct == ["carol still here", "bob yours now"], "the survivor's messages")
    emitter.close()
