"""Issue 23: a Redis outage logged at WARNING ends with a line at WARNING saying Redis is back.

With the level the chat example sets (WARNING), the log used to show "lost Redis" and the
reconnect lines, then nothing: the recovery was an INFO line. A real redis-server is killed
and started again on the same port (``tests/redis_server.py``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from tests.subprocess_server import ROOT, free_port
from tests.waiting import wait_for


def redis_lines(caplog: pytest.LogCaptureFixture, port: int) -> list[tuple[int, str]]:
    """The backplane's lines about the Redis on ``port`` (this test's): a backplane of an earlier
    test that is still reconnecting to its own, gone, Redis logs too, and caplog takes every line."""
    return [(record.levelno, message) for record in caplog.records
            if record.name == "ignitia_sync.redis" and f"127.0.0.1:{port}" in (message := record.getMessage())]


def test_the_recovery_is_logged_at_the_level_of_the_outage_once(redis_server, make, caplog):
    caplog.set_level(logging.WARNING, logger="ignitia_sync")  # what the chat example sets
    backplane = make()
    wait_for(lambda: backplane.stats()["up"], "the link")
    assert redis_lines(caplog, redis_server.port) == []  # a first connection is no recovery: INFO, not shown here
    redis_server.kill()
    wait_for(lambda: any("lost Redis" in line for _, line in redis_lines(caplog, redis_server.port)), "the outage line")
    # A long outage: enough reconnect lines to spend the burst of the reconnect lines' throttle,
    # which must not hold back the line that says the outage is over.
    wait_for(lambda: backplane._warn.held_back > 0, "the reconnect lines to be throttled", timeout=30)
    redis_server.start()
    wait_for(lambda: backplane.stats()["up"], "the link back", timeout=30)
    # the line follows the link's state change in the backplane's own greenlet: wait for it
    wait_for(lambda: any("Redis is back" in line for _, line in redis_lines(caplog, redis_server.port)), "the recovery line")
    back = [(level, line) for level, line in redis_lines(caplog, redis_server.port) if "Redis is back" in line]
    assert len(back) == 1, redis_lines(caplog, redis_server.port)
    level, line = back[0]
    assert level == logging.WARNING
    assert line.startswith(f"backplane: Redis is back (redis://127.0.0.1:{redis_server.port}/0) after ")
    assert line.endswith("s; broadcasts cross processes again") and "\n" not in line
    lost = [level for level, line in redis_lines(caplog, redis_server.port) if "lost Redis" in line]
    assert lost == [logging.WARNING]


def test_a_second_outage_gets_its_own_recovery_line(redis_server, make, caplog):
    caplog.set_level(logging.WARNING, logger="ignitia_sync")
    backplane = make()
    wait_for(lambda: backplane.stats()["up"], "the link")
    for outage in (1, 2):
        redis_server.kill()
        wait_for(lambda: not backplane.stats()["up"], "the link down")
        redis_server.start()
        wait_for(lambda: backplane.stats()["up"], "the link back", timeout=30)
        wait_for(lambda outage=outage: sum("Redis is back" in line for _, line in redis_lines(caplog, redis_server.port)) >= outage,
                 f"recovery line {outage}")
        assert sum("Redis is back" in line for _, line in redis_lines(caplog, redis_server.port)) == outage


def test_the_chat_example_says_when_redis_is_back(redis_server, tmp_path):
    port = free_port()
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:
        process = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "examples", "redis_chat.py"), "--port", str(port)], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT, "REDIS_URL": redis_server.url}, stdout=subprocess.DEVNULL,
            stderr=err, text=True,
        )
    try:
        def said(text: str) -> bool:
            assert process.poll() is None, stderr.read_text()
            return text in stderr.read_text()

        wait_for(lambda: redis_server.subscribers("ignitia:all") == 1, "the example's subscription", timeout=30)
        redis_server.kill()
        wait_for(lambda: said("WARNING ignitia_sync.redis: backplane: lost Redis"), "the outage line", timeout=30)
        redis_server.start()
        wait_for(lambda: said("WARNING ignitia_sync.redis: backplane: Redis is back"), "the recovery line",
                 timeout=60)
    finally:
        process.terminate()
        process.wait(20)
    assert "Traceback" not in stderr.read_text()
