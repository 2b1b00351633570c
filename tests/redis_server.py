"""A real redis-server of the test's own (Debian's package, installed by ``.ci/run``).

Shared by ``test_redis.py`` and ``test_chat_app.py``; the ``redis_server`` fixture (in
``conftest.py``) starts one per test and kills it after.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

import redis

from .subprocess_server import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """A redis-server of our own on a free port; :meth:`kill` and :meth:`start` again on the same port."""

    def __init__(self, *options: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        # Its own working directory: a replica writes the RDB it received there, and a server
        # started later in a shared directory would load it (``--save ""`` stops saving, not loading).
        self.directory = tempfile.mkdtemp(prefix="redis-test-")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.directory, *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def subscribers(self, channel: str) -> int:
        return int(dict(self.client().pubsub_numsub(channel))[channel.encode()])

